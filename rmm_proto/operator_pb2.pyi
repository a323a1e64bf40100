from rmm_proto import commands_pb2 as _commands_pb2
from rmm_proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EnrollmentToken(_message.Message):
    __slots__ = ("id", "client", "site", "created_at", "expires_at", "max_uses", "uses", "revoked_at", "created_by", "state")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    USES_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    id: str
    client: str
    site: str
    created_at: float
    expires_at: float
    max_uses: int
    uses: int
    revoked_at: float
    created_by: str
    state: str
    def __init__(self, id: _Optional[str] = ..., client: _Optional[str] = ..., site: _Optional[str] = ..., created_at: _Optional[float] = ..., expires_at: _Optional[float] = ..., max_uses: _Optional[int] = ..., uses: _Optional[int] = ..., revoked_at: _Optional[float] = ..., created_by: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class CreateEnrollmentTokenRequest(_message.Message):
    __slots__ = ("client", "site", "expires_in_seconds", "max_uses")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_USES_FIELD_NUMBER: _ClassVar[int]
    client: str
    site: str
    expires_in_seconds: float
    max_uses: int
    def __init__(self, client: _Optional[str] = ..., site: _Optional[str] = ..., expires_in_seconds: _Optional[float] = ..., max_uses: _Optional[int] = ...) -> None: ...

class CreateEnrollmentTokenResponse(_message.Message):
    __slots__ = ("token", "secret", "ca_fingerprint")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    CA_FINGERPRINT_FIELD_NUMBER: _ClassVar[int]
    token: EnrollmentToken
    secret: str
    ca_fingerprint: str
    def __init__(self, token: _Optional[_Union[EnrollmentToken, _Mapping]] = ..., secret: _Optional[str] = ..., ca_fingerprint: _Optional[str] = ...) -> None: ...

class ListEnrollmentTokensRequest(_message.Message):
    __slots__ = ("include_inactive",)
    INCLUDE_INACTIVE_FIELD_NUMBER: _ClassVar[int]
    include_inactive: bool
    def __init__(self, include_inactive: _Optional[bool] = ...) -> None: ...

class ListEnrollmentTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[EnrollmentToken]
    def __init__(self, tokens: _Optional[_Iterable[_Union[EnrollmentToken, _Mapping]]] = ...) -> None: ...

class RevokeEnrollmentTokenRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class AgentFilter(_message.Message):
    __slots__ = ("client", "site", "tag", "status")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    client: str
    site: str
    tag: str
    status: str
    def __init__(self, client: _Optional[str] = ..., site: _Optional[str] = ..., tag: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ("filter", "limit", "page_token", "json_rows", "json_now")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    JSON_ROWS_FIELD_NUMBER: _ClassVar[int]
    JSON_NOW_FIELD_NUMBER: _ClassVar[int]
    filter: AgentFilter
    limit: int
    page_token: str
    json_rows: bool
    json_now: float
    def __init__(self, filter: _Optional[_Union[AgentFilter, _Mapping]] = ..., limit: _Optional[int] = ..., page_token: _Optional[str] = ..., json_rows: _Optional[bool] = ..., json_now: _Optional[float] = ...) -> None: ...

class AgentSummary(_message.Message):
    __slots__ = ("id", "hostname", "client", "site", "tags", "os", "os_name", "os_version", "enrolled_at", "last_seen", "online", "interval_seconds", "cpu_usage_ratio", "memory_used_ratio", "disk_used_ratio_max", "disk_used_ratio_max_mountpoint", "uptime_seconds", "collector_errors", "last_sequence", "agent_version", "revoked_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    OS_NAME_FIELD_NUMBER: _ClassVar[int]
    OS_VERSION_FIELD_NUMBER: _ClassVar[int]
    ENROLLED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CPU_USAGE_RATIO_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_RATIO_FIELD_NUMBER: _ClassVar[int]
    DISK_USED_RATIO_MAX_FIELD_NUMBER: _ClassVar[int]
    DISK_USED_RATIO_MAX_MOUNTPOINT_FIELD_NUMBER: _ClassVar[int]
    UPTIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COLLECTOR_ERRORS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    hostname: str
    client: str
    site: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    os: str
    os_name: str
    os_version: str
    enrolled_at: float
    last_seen: float
    online: bool
    interval_seconds: int
    cpu_usage_ratio: float
    memory_used_ratio: float
    disk_used_ratio_max: float
    disk_used_ratio_max_mountpoint: str
    uptime_seconds: float
    collector_errors: int
    last_sequence: int
    agent_version: str
    revoked_at: float
    def __init__(self, id: _Optional[str] = ..., hostname: _Optional[str] = ..., client: _Optional[str] = ..., site: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., os: _Optional[str] = ..., os_name: _Optional[str] = ..., os_version: _Optional[str] = ..., enrolled_at: _Optional[float] = ..., last_seen: _Optional[float] = ..., online: _Optional[bool] = ..., interval_seconds: _Optional[int] = ..., cpu_usage_ratio: _Optional[float] = ..., memory_used_ratio: _Optional[float] = ..., disk_used_ratio_max: _Optional[float] = ..., disk_used_ratio_max_mountpoint: _Optional[str] = ..., uptime_seconds: _Optional[float] = ..., collector_errors: _Optional[int] = ..., last_sequence: _Optional[int] = ..., agent_version: _Optional[str] = ..., revoked_at: _Optional[float] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents", "next_page_token", "total", "json_rows", "json_row_count")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    JSON_ROWS_FIELD_NUMBER: _ClassVar[int]
    JSON_ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentSummary]
    next_page_token: str
    total: int
    json_rows: bytes
    json_row_count: int
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentSummary, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ..., json_rows: _Optional[bytes] = ..., json_row_count: _Optional[int] = ...) -> None: ...

class RevokeAgentRequest(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: str
    def __init__(self, agent: _Optional[str] = ...) -> None: ...

class RotateAgentCredentialRequest(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: str
    def __init__(self, agent: _Optional[str] = ...) -> None: ...

class UpdateAgentRequest(_message.Message):
    __slots__ = ("agent", "client", "site", "add_tags", "remove_tags")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    ADD_TAGS_FIELD_NUMBER: _ClassVar[int]
    REMOVE_TAGS_FIELD_NUMBER: _ClassVar[int]
    agent: str
    client: str
    site: str
    add_tags: _containers.RepeatedScalarFieldContainer[str]
    remove_tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, agent: _Optional[str] = ..., client: _Optional[str] = ..., site: _Optional[str] = ..., add_tags: _Optional[_Iterable[str]] = ..., remove_tags: _Optional[_Iterable[str]] = ...) -> None: ...

class GetAgentRequest(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: str
    def __init__(self, agent: _Optional[str] = ...) -> None: ...

class CollectorStatus(_message.Message):
    __slots__ = ("name", "ok", "error", "duration_seconds")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    name: str
    ok: bool
    error: str
    duration_seconds: float
    def __init__(self, name: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., duration_seconds: _Optional[float] = ...) -> None: ...

class AgentDetail(_message.Message):
    __slots__ = ("summary", "kernel", "arch", "samples", "collectors", "info_json", "inventory_json", "inventory_hash", "inventory_updated_at", "first_sequence", "reports_stored", "dropped_reports", "conflicting_reports", "skipped_sequences")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    COLLECTORS_FIELD_NUMBER: _ClassVar[int]
    INFO_JSON_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_JSON_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_HASH_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    REPORTS_STORED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_REPORTS_FIELD_NUMBER: _ClassVar[int]
    CONFLICTING_REPORTS_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    summary: AgentSummary
    kernel: str
    arch: str
    samples: _containers.RepeatedCompositeFieldContainer[_common_pb2.Sample]
    collectors: _containers.RepeatedCompositeFieldContainer[CollectorStatus]
    info_json: bytes
    inventory_json: bytes
    inventory_hash: str
    inventory_updated_at: float
    first_sequence: int
    reports_stored: int
    dropped_reports: int
    conflicting_reports: int
    skipped_sequences: int
    def __init__(self, summary: _Optional[_Union[AgentSummary, _Mapping]] = ..., kernel: _Optional[str] = ..., arch: _Optional[str] = ..., samples: _Optional[_Iterable[_Union[_common_pb2.Sample, _Mapping]]] = ..., collectors: _Optional[_Iterable[_Union[CollectorStatus, _Mapping]]] = ..., info_json: _Optional[bytes] = ..., inventory_json: _Optional[bytes] = ..., inventory_hash: _Optional[str] = ..., inventory_updated_at: _Optional[float] = ..., first_sequence: _Optional[int] = ..., reports_stored: _Optional[int] = ..., dropped_reports: _Optional[int] = ..., conflicting_reports: _Optional[int] = ..., skipped_sequences: _Optional[int] = ...) -> None: ...

class AlertInfo(_message.Message):
    __slots__ = ("id", "rule", "rule_key", "agent_id", "hostname", "client", "site", "state", "severity", "tier", "labels", "annotations", "value", "started_at", "fired_at", "resolved_at", "acknowledged_by", "acknowledged_at", "ack_comment", "suppressed_by", "history_json")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class AnnotationsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    RULE_KEY_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FIRED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_BY_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_AT_FIELD_NUMBER: _ClassVar[int]
    ACK_COMMENT_FIELD_NUMBER: _ClassVar[int]
    SUPPRESSED_BY_FIELD_NUMBER: _ClassVar[int]
    HISTORY_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    rule: str
    rule_key: str
    agent_id: str
    hostname: str
    client: str
    site: str
    state: str
    severity: str
    tier: str
    labels: _containers.ScalarMap[str, str]
    annotations: _containers.ScalarMap[str, str]
    value: float
    started_at: float
    fired_at: float
    resolved_at: float
    acknowledged_by: str
    acknowledged_at: float
    ack_comment: str
    suppressed_by: str
    history_json: str
    def __init__(self, id: _Optional[str] = ..., rule: _Optional[str] = ..., rule_key: _Optional[str] = ..., agent_id: _Optional[str] = ..., hostname: _Optional[str] = ..., client: _Optional[str] = ..., site: _Optional[str] = ..., state: _Optional[str] = ..., severity: _Optional[str] = ..., tier: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., annotations: _Optional[_Mapping[str, str]] = ..., value: _Optional[float] = ..., started_at: _Optional[float] = ..., fired_at: _Optional[float] = ..., resolved_at: _Optional[float] = ..., acknowledged_by: _Optional[str] = ..., acknowledged_at: _Optional[float] = ..., ack_comment: _Optional[str] = ..., suppressed_by: _Optional[str] = ..., history_json: _Optional[str] = ...) -> None: ...

class GetAlertRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class AlertNotification(_message.Message):
    __slots__ = ("at", "receiver", "notifier", "status", "delivered", "error", "group_key")
    AT_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    NOTIFIER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    GROUP_KEY_FIELD_NUMBER: _ClassVar[int]
    at: float
    receiver: str
    notifier: str
    status: str
    delivered: bool
    error: str
    group_key: str
    def __init__(self, at: _Optional[float] = ..., receiver: _Optional[str] = ..., notifier: _Optional[str] = ..., status: _Optional[str] = ..., delivered: _Optional[bool] = ..., error: _Optional[str] = ..., group_key: _Optional[str] = ...) -> None: ...

class AlertDetail(_message.Message):
    __slots__ = ("alert", "expr", "for_seconds", "rule_source", "agent", "silences", "notifications")
    ALERT_FIELD_NUMBER: _ClassVar[int]
    EXPR_FIELD_NUMBER: _ClassVar[int]
    FOR_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RULE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    SILENCES_FIELD_NUMBER: _ClassVar[int]
    NOTIFICATIONS_FIELD_NUMBER: _ClassVar[int]
    alert: AlertInfo
    expr: str
    for_seconds: float
    rule_source: str
    agent: AgentSummary
    silences: _containers.RepeatedCompositeFieldContainer[SilenceInfo]
    notifications: _containers.RepeatedCompositeFieldContainer[AlertNotification]
    def __init__(self, alert: _Optional[_Union[AlertInfo, _Mapping]] = ..., expr: _Optional[str] = ..., for_seconds: _Optional[float] = ..., rule_source: _Optional[str] = ..., agent: _Optional[_Union[AgentSummary, _Mapping]] = ..., silences: _Optional[_Iterable[_Union[SilenceInfo, _Mapping]]] = ..., notifications: _Optional[_Iterable[_Union[AlertNotification, _Mapping]]] = ...) -> None: ...

class ListAlertsRequest(_message.Message):
    __slots__ = ("states", "client", "severity", "agent", "limit")
    STATES_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[str]
    client: str
    severity: str
    agent: str
    limit: int
    def __init__(self, states: _Optional[_Iterable[str]] = ..., client: _Optional[str] = ..., severity: _Optional[str] = ..., agent: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAlertsResponse(_message.Message):
    __slots__ = ("alerts",)
    ALERTS_FIELD_NUMBER: _ClassVar[int]
    alerts: _containers.RepeatedCompositeFieldContainer[AlertInfo]
    def __init__(self, alerts: _Optional[_Iterable[_Union[AlertInfo, _Mapping]]] = ...) -> None: ...

class AckAlertRequest(_message.Message):
    __slots__ = ("id", "comment")
    ID_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    id: str
    comment: str
    def __init__(self, id: _Optional[str] = ..., comment: _Optional[str] = ...) -> None: ...

class SilenceInfo(_message.Message):
    __slots__ = ("id", "matchers", "starts_at", "ends_at", "created_by", "comment", "created_at", "state")
    ID_FIELD_NUMBER: _ClassVar[int]
    MATCHERS_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    id: str
    matchers: str
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float
    state: str
    def __init__(self, id: _Optional[str] = ..., matchers: _Optional[str] = ..., starts_at: _Optional[float] = ..., ends_at: _Optional[float] = ..., created_by: _Optional[str] = ..., comment: _Optional[str] = ..., created_at: _Optional[float] = ..., state: _Optional[str] = ...) -> None: ...

class CreateSilenceRequest(_message.Message):
    __slots__ = ("matchers", "duration_seconds", "comment", "starts_at")
    MATCHERS_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_FIELD_NUMBER: _ClassVar[int]
    matchers: str
    duration_seconds: float
    comment: str
    starts_at: float
    def __init__(self, matchers: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., comment: _Optional[str] = ..., starts_at: _Optional[float] = ...) -> None: ...

class ListSilencesRequest(_message.Message):
    __slots__ = ("include_expired",)
    INCLUDE_EXPIRED_FIELD_NUMBER: _ClassVar[int]
    include_expired: bool
    def __init__(self, include_expired: _Optional[bool] = ...) -> None: ...

class ListSilencesResponse(_message.Message):
    __slots__ = ("silences",)
    SILENCES_FIELD_NUMBER: _ClassVar[int]
    silences: _containers.RepeatedCompositeFieldContainer[SilenceInfo]
    def __init__(self, silences: _Optional[_Iterable[_Union[SilenceInfo, _Mapping]]] = ...) -> None: ...

class ExpireSilenceRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class MaintenanceInfo(_message.Message):
    __slots__ = ("id", "name", "schedule", "start_at", "duration_seconds", "timezone", "clients", "sites", "agents", "tags", "created_by", "comment", "created_at", "ended_at", "active_now", "current_end", "next_start")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    START_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_NOW_FIELD_NUMBER: _ClassVar[int]
    CURRENT_END_FIELD_NUMBER: _ClassVar[int]
    NEXT_START_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    schedule: str
    start_at: float
    duration_seconds: float
    timezone: str
    clients: _containers.RepeatedScalarFieldContainer[str]
    sites: _containers.RepeatedScalarFieldContainer[str]
    agents: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    created_by: str
    comment: str
    created_at: float
    ended_at: float
    active_now: bool
    current_end: float
    next_start: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., schedule: _Optional[str] = ..., start_at: _Optional[float] = ..., duration_seconds: _Optional[float] = ..., timezone: _Optional[str] = ..., clients: _Optional[_Iterable[str]] = ..., sites: _Optional[_Iterable[str]] = ..., agents: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., created_by: _Optional[str] = ..., comment: _Optional[str] = ..., created_at: _Optional[float] = ..., ended_at: _Optional[float] = ..., active_now: _Optional[bool] = ..., current_end: _Optional[float] = ..., next_start: _Optional[float] = ...) -> None: ...

class AddMaintenanceRequest(_message.Message):
    __slots__ = ("name", "schedule", "start_at", "duration_seconds", "timezone", "clients", "sites", "agents", "tags", "comment")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    START_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    name: str
    schedule: str
    start_at: float
    duration_seconds: float
    timezone: str
    clients: _containers.RepeatedScalarFieldContainer[str]
    sites: _containers.RepeatedScalarFieldContainer[str]
    agents: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    comment: str
    def __init__(self, name: _Optional[str] = ..., schedule: _Optional[str] = ..., start_at: _Optional[float] = ..., duration_seconds: _Optional[float] = ..., timezone: _Optional[str] = ..., clients: _Optional[_Iterable[str]] = ..., sites: _Optional[_Iterable[str]] = ..., agents: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., comment: _Optional[str] = ...) -> None: ...

class ListMaintenanceRequest(_message.Message):
    __slots__ = ("include_ended",)
    INCLUDE_ENDED_FIELD_NUMBER: _ClassVar[int]
    include_ended: bool
    def __init__(self, include_ended: _Optional[bool] = ...) -> None: ...

class ListMaintenanceResponse(_message.Message):
    __slots__ = ("windows",)
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    windows: _containers.RepeatedCompositeFieldContainer[MaintenanceInfo]
    def __init__(self, windows: _Optional[_Iterable[_Union[MaintenanceInfo, _Mapping]]] = ...) -> None: ...

class EndMaintenanceRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ReloadPoliciesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadPoliciesResponse(_message.Message):
    __slots__ = ("ok", "errors", "policies", "rules", "other_replicas", "notify_config", "notify_ok", "notify_errors", "receivers")
    OK_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    OTHER_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_CONFIG_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_OK_FIELD_NUMBER: _ClassVar[int]
    NOTIFY_ERRORS_FIELD_NUMBER: _ClassVar[int]
    RECEIVERS_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    errors: _containers.RepeatedScalarFieldContainer[str]
    policies: int
    rules: int
    other_replicas: int
    notify_config: bool
    notify_ok: bool
    notify_errors: _containers.RepeatedScalarFieldContainer[str]
    receivers: int
    def __init__(self, ok: _Optional[bool] = ..., errors: _Optional[_Iterable[str]] = ..., policies: _Optional[int] = ..., rules: _Optional[int] = ..., other_replicas: _Optional[int] = ..., notify_config: _Optional[bool] = ..., notify_ok: _Optional[bool] = ..., notify_errors: _Optional[_Iterable[str]] = ..., receivers: _Optional[int] = ...) -> None: ...

class ExplainPolicyRequest(_message.Message):
    __slots__ = ("agent",)
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent: str
    def __init__(self, agent: _Optional[str] = ...) -> None: ...

class ExplainedRule(_message.Message):
    __slots__ = ("key", "name", "policy", "layer", "source", "severity", "tier", "for_seconds", "keep_firing_for_seconds", "expr", "clear", "set_by")
    class SetByEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEY_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    FOR_SECONDS_FIELD_NUMBER: _ClassVar[int]
    KEEP_FIRING_FOR_SECONDS_FIELD_NUMBER: _ClassVar[int]
    EXPR_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    SET_BY_FIELD_NUMBER: _ClassVar[int]
    key: str
    name: str
    policy: str
    layer: str
    source: str
    severity: str
    tier: str
    for_seconds: float
    keep_firing_for_seconds: float
    expr: str
    clear: str
    set_by: _containers.ScalarMap[str, str]
    def __init__(self, key: _Optional[str] = ..., name: _Optional[str] = ..., policy: _Optional[str] = ..., layer: _Optional[str] = ..., source: _Optional[str] = ..., severity: _Optional[str] = ..., tier: _Optional[str] = ..., for_seconds: _Optional[float] = ..., keep_firing_for_seconds: _Optional[float] = ..., expr: _Optional[str] = ..., clear: _Optional[str] = ..., set_by: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ExplainPolicyResponse(_message.Message):
    __slots__ = ("agent_id", "rules", "patch_settings")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    PATCH_SETTINGS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    rules: _containers.RepeatedCompositeFieldContainer[ExplainedRule]
    patch_settings: _containers.RepeatedCompositeFieldContainer[ExplainedPatchSetting]
    def __init__(self, agent_id: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[ExplainedRule, _Mapping]]] = ..., patch_settings: _Optional[_Iterable[_Union[ExplainedPatchSetting, _Mapping]]] = ...) -> None: ...

class ListFailedNotificationsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class FailedNotification(_message.Message):
    __slots__ = ("at", "receiver", "notifier", "error", "status", "alert_ids", "group_key")
    AT_FIELD_NUMBER: _ClassVar[int]
    RECEIVER_FIELD_NUMBER: _ClassVar[int]
    NOTIFIER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ALERT_IDS_FIELD_NUMBER: _ClassVar[int]
    GROUP_KEY_FIELD_NUMBER: _ClassVar[int]
    at: float
    receiver: str
    notifier: str
    error: str
    status: str
    alert_ids: _containers.RepeatedScalarFieldContainer[str]
    group_key: str
    def __init__(self, at: _Optional[float] = ..., receiver: _Optional[str] = ..., notifier: _Optional[str] = ..., error: _Optional[str] = ..., status: _Optional[str] = ..., alert_ids: _Optional[_Iterable[str]] = ..., group_key: _Optional[str] = ...) -> None: ...

class ListFailedNotificationsResponse(_message.Message):
    __slots__ = ("failures",)
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    failures: _containers.RepeatedCompositeFieldContainer[FailedNotification]
    def __init__(self, failures: _Optional[_Iterable[_Union[FailedNotification, _Mapping]]] = ...) -> None: ...

class TargetSelector(_message.Message):
    __slots__ = ("agents", "client", "site", "tag", "os", "status", "all")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    TAG_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedScalarFieldContainer[str]
    client: str
    site: str
    tag: str
    os: str
    status: str
    all: bool
    def __init__(self, agents: _Optional[_Iterable[str]] = ..., client: _Optional[str] = ..., site: _Optional[str] = ..., tag: _Optional[str] = ..., os: _Optional[str] = ..., status: _Optional[str] = ..., all: _Optional[bool] = ...) -> None: ...

class RunCommandRequest(_message.Message):
    __slots__ = ("target", "timeout_seconds", "queue_offline", "expires_in_seconds", "parallel", "detach", "consent", "ticket", "run_script", "list_processes", "kill_process", "list_services", "service_control", "reboot", "push_file", "pull_file", "collect_now", "driver_package")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_OFFLINE_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_IN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PARALLEL_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    RUN_SCRIPT_FIELD_NUMBER: _ClassVar[int]
    LIST_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    KILL_PROCESS_FIELD_NUMBER: _ClassVar[int]
    LIST_SERVICES_FIELD_NUMBER: _ClassVar[int]
    SERVICE_CONTROL_FIELD_NUMBER: _ClassVar[int]
    REBOOT_FIELD_NUMBER: _ClassVar[int]
    PUSH_FILE_FIELD_NUMBER: _ClassVar[int]
    PULL_FILE_FIELD_NUMBER: _ClassVar[int]
    COLLECT_NOW_FIELD_NUMBER: _ClassVar[int]
    DRIVER_PACKAGE_FIELD_NUMBER: _ClassVar[int]
    target: TargetSelector
    timeout_seconds: float
    queue_offline: bool
    expires_in_seconds: float
    parallel: int
    detach: bool
    consent: _commands_pb2.ConsentMode
    ticket: int
    run_script: _commands_pb2.RunScript
    list_processes: _commands_pb2.ListProcesses
    kill_process: _commands_pb2.KillProcess
    list_services: _commands_pb2.ListServices
    service_control: _commands_pb2.ServiceControl
    reboot: _commands_pb2.Reboot
    push_file: _commands_pb2.PushFile
    pull_file: _commands_pb2.PullFile
    collect_now: _commands_pb2.CollectNow
    driver_package: _commands_pb2.DriverPackage
    def __init__(self, target: _Optional[_Union[TargetSelector, _Mapping]] = ..., timeout_seconds: _Optional[float] = ..., queue_offline: _Optional[bool] = ..., expires_in_seconds: _Optional[float] = ..., parallel: _Optional[int] = ..., detach: _Optional[bool] = ..., consent: _Optional[_Union[_commands_pb2.ConsentMode, str]] = ..., ticket: _Optional[int] = ..., run_script: _Optional[_Union[_commands_pb2.RunScript, _Mapping]] = ..., list_processes: _Optional[_Union[_commands_pb2.ListProcesses, _Mapping]] = ..., kill_process: _Optional[_Union[_commands_pb2.KillProcess, _Mapping]] = ..., list_services: _Optional[_Union[_commands_pb2.ListServices, _Mapping]] = ..., service_control: _Optional[_Union[_commands_pb2.ServiceControl, _Mapping]] = ..., reboot: _Optional[_Union[_commands_pb2.Reboot, _Mapping]] = ..., push_file: _Optional[_Union[_commands_pb2.PushFile, _Mapping]] = ..., pull_file: _Optional[_Union[_commands_pb2.PullFile, _Mapping]] = ..., collect_now: _Optional[_Union[_commands_pb2.CollectNow, _Mapping]] = ..., driver_package: _Optional[_Union[_commands_pb2.DriverPackage, _Mapping]] = ...) -> None: ...

class CommandInfo(_message.Message):
    __slots__ = ("id", "run_id", "agent_id", "hostname", "operator", "action", "summary", "status", "issued_at", "expires_at", "sent_at", "finished_at", "result", "error", "fields_json")
    ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FIELDS_JSON_FIELD_NUMBER: _ClassVar[int]
    id: str
    run_id: str
    agent_id: str
    hostname: str
    operator: str
    action: str
    summary: str
    status: _commands_pb2.CommandStatus
    issued_at: float
    expires_at: float
    sent_at: float
    finished_at: float
    result: _commands_pb2.CommandResult
    error: str
    fields_json: str
    def __init__(self, id: _Optional[str] = ..., run_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., hostname: _Optional[str] = ..., operator: _Optional[str] = ..., action: _Optional[str] = ..., summary: _Optional[str] = ..., status: _Optional[_Union[_commands_pb2.CommandStatus, str]] = ..., issued_at: _Optional[float] = ..., expires_at: _Optional[float] = ..., sent_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., result: _Optional[_Union[_commands_pb2.CommandResult, _Mapping]] = ..., error: _Optional[str] = ..., fields_json: _Optional[str] = ...) -> None: ...

class RunTarget(_message.Message):
    __slots__ = ("agent_id", "hostname", "command_id", "online")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    ONLINE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    hostname: str
    command_id: str
    online: bool
    def __init__(self, agent_id: _Optional[str] = ..., hostname: _Optional[str] = ..., command_id: _Optional[str] = ..., online: _Optional[bool] = ...) -> None: ...

class RunStarted(_message.Message):
    __slots__ = ("run_id", "targets")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    targets: _containers.RepeatedCompositeFieldContainer[RunTarget]
    def __init__(self, run_id: _Optional[str] = ..., targets: _Optional[_Iterable[_Union[RunTarget, _Mapping]]] = ...) -> None: ...

class RunEvent(_message.Message):
    __slots__ = ("started", "outcome")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    started: RunStarted
    outcome: CommandInfo
    def __init__(self, started: _Optional[_Union[RunStarted, _Mapping]] = ..., outcome: _Optional[_Union[CommandInfo, _Mapping]] = ...) -> None: ...

class GetCommandRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListCommandsRequest(_message.Message):
    __slots__ = ("agent", "run_id", "statuses", "limit")
    AGENT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATUSES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    agent: str
    run_id: str
    statuses: _containers.RepeatedScalarFieldContainer[_commands_pb2.CommandStatus]
    limit: int
    def __init__(self, agent: _Optional[str] = ..., run_id: _Optional[str] = ..., statuses: _Optional[_Iterable[_Union[_commands_pb2.CommandStatus, str]]] = ..., limit: _Optional[int] = ...) -> None: ...

class ListCommandsResponse(_message.Message):
    __slots__ = ("commands",)
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[CommandInfo]
    def __init__(self, commands: _Optional[_Iterable[_Union[CommandInfo, _Mapping]]] = ...) -> None: ...

class ScriptInfo(_message.Message):
    __slots__ = ("name", "description", "shells", "default_timeout_seconds", "min_role", "body", "path", "params")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SHELLS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MIN_ROLE_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    shells: _containers.RepeatedScalarFieldContainer[str]
    default_timeout_seconds: float
    min_role: str
    body: str
    path: str
    params: _containers.RepeatedCompositeFieldContainer[ScriptParam]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., shells: _Optional[_Iterable[str]] = ..., default_timeout_seconds: _Optional[float] = ..., min_role: _Optional[str] = ..., body: _Optional[str] = ..., path: _Optional[str] = ..., params: _Optional[_Iterable[_Union[ScriptParam, _Mapping]]] = ...) -> None: ...

class ScriptParam(_message.Message):
    __slots__ = ("name", "type", "description", "required", "default", "has_default", "choices", "pattern", "minimum", "maximum", "roots")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REQUIRED_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    HAS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_FIELD_NUMBER: _ClassVar[int]
    ROOTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    description: str
    required: bool
    default: str
    has_default: bool
    choices: _containers.RepeatedScalarFieldContainer[str]
    pattern: str
    minimum: str
    maximum: str
    roots: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., description: _Optional[str] = ..., required: _Optional[bool] = ..., default: _Optional[str] = ..., has_default: _Optional[bool] = ..., choices: _Optional[_Iterable[str]] = ..., pattern: _Optional[str] = ..., minimum: _Optional[str] = ..., maximum: _Optional[str] = ..., roots: _Optional[_Iterable[str]] = ...) -> None: ...

class ListScriptsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListScriptsResponse(_message.Message):
    __slots__ = ("scripts",)
    SCRIPTS_FIELD_NUMBER: _ClassVar[int]
    scripts: _containers.RepeatedCompositeFieldContainer[ScriptInfo]
    def __init__(self, scripts: _Optional[_Iterable[_Union[ScriptInfo, _Mapping]]] = ...) -> None: ...

class GetScriptRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class OperatorInfo(_message.Message):
    __slots__ = ("id", "name", "role", "created_at", "revoked_at", "created_by")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    role: str
    created_at: float
    revoked_at: float
    created_by: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., role: _Optional[str] = ..., created_at: _Optional[float] = ..., revoked_at: _Optional[float] = ..., created_by: _Optional[str] = ...) -> None: ...

class AddOperatorRequest(_message.Message):
    __slots__ = ("name", "role")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    role: str
    def __init__(self, name: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class AddOperatorResponse(_message.Message):
    __slots__ = ("operator", "token")
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    operator: OperatorInfo
    token: str
    def __init__(self, operator: _Optional[_Union[OperatorInfo, _Mapping]] = ..., token: _Optional[str] = ...) -> None: ...

class ListOperatorsRequest(_message.Message):
    __slots__ = ("include_revoked",)
    INCLUDE_REVOKED_FIELD_NUMBER: _ClassVar[int]
    include_revoked: bool
    def __init__(self, include_revoked: _Optional[bool] = ...) -> None: ...

class ListOperatorsResponse(_message.Message):
    __slots__ = ("operators",)
    OPERATORS_FIELD_NUMBER: _ClassVar[int]
    operators: _containers.RepeatedCompositeFieldContainer[OperatorInfo]
    def __init__(self, operators: _Optional[_Iterable[_Union[OperatorInfo, _Mapping]]] = ...) -> None: ...

class RevokeOperatorRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("seq", "at", "operator", "action", "target", "details_json", "outcome", "prev_hash", "hash")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    seq: int
    at: float
    operator: str
    action: str
    target: str
    details_json: str
    outcome: str
    prev_hash: str
    hash: str
    def __init__(self, seq: _Optional[int] = ..., at: _Optional[float] = ..., operator: _Optional[str] = ..., action: _Optional[str] = ..., target: _Optional[str] = ..., details_json: _Optional[str] = ..., outcome: _Optional[str] = ..., prev_hash: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("since", "operator", "agent", "limit")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    since: float
    operator: str
    agent: str
    limit: int
    def __init__(self, since: _Optional[float] = ..., operator: _Optional[str] = ..., agent: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class VerifyAuditRequest(_message.Message):
    __slots__ = ("checkpoints",)
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    checkpoints: _containers.RepeatedCompositeFieldContainer[CheckpointLines]
    def __init__(self, checkpoints: _Optional[_Iterable[_Union[CheckpointLines, _Mapping]]] = ...) -> None: ...

class CheckpointLines(_message.Message):
    __slots__ = ("source", "lines")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    source: str
    lines: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, source: _Optional[str] = ..., lines: _Optional[_Iterable[str]] = ...) -> None: ...

class VerifyAuditResponse(_message.Message):
    __slots__ = ("ok", "entries", "first_seq", "last_seq", "problem", "archived_through", "checkpoint_problems", "checkpoints", "checkpoints_checked", "newest_checkpoint_seq", "newest_checkpoint_at", "newest_checkpoint_hash", "checkpoint_sources", "signing_key", "archived_pins")
    OK_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQ_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    PROBLEM_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_THROUGH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINTS_CHECKED_FIELD_NUMBER: _ClassVar[int]
    NEWEST_CHECKPOINT_SEQ_FIELD_NUMBER: _ClassVar[int]
    NEWEST_CHECKPOINT_AT_FIELD_NUMBER: _ClassVar[int]
    NEWEST_CHECKPOINT_HASH_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_SOURCES_FIELD_NUMBER: _ClassVar[int]
    SIGNING_KEY_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_PINS_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    entries: int
    first_seq: int
    last_seq: int
    problem: str
    archived_through: int
    checkpoint_problems: _containers.RepeatedScalarFieldContainer[str]
    checkpoints: int
    checkpoints_checked: int
    newest_checkpoint_seq: int
    newest_checkpoint_at: float
    newest_checkpoint_hash: str
    checkpoint_sources: _containers.RepeatedScalarFieldContainer[str]
    signing_key: str
    archived_pins: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ok: _Optional[bool] = ..., entries: _Optional[int] = ..., first_seq: _Optional[int] = ..., last_seq: _Optional[int] = ..., problem: _Optional[str] = ..., archived_through: _Optional[int] = ..., checkpoint_problems: _Optional[_Iterable[str]] = ..., checkpoints: _Optional[int] = ..., checkpoints_checked: _Optional[int] = ..., newest_checkpoint_seq: _Optional[int] = ..., newest_checkpoint_at: _Optional[float] = ..., newest_checkpoint_hash: _Optional[str] = ..., checkpoint_sources: _Optional[_Iterable[str]] = ..., signing_key: _Optional[str] = ..., archived_pins: _Optional[_Iterable[str]] = ...) -> None: ...

class ExportAuditRequest(_message.Message):
    __slots__ = ("before",)
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    before: float
    def __init__(self, before: _Optional[float] = ...) -> None: ...

class ArchiveAuditRequest(_message.Message):
    __slots__ = ("through_seq", "through_hash")
    THROUGH_SEQ_FIELD_NUMBER: _ClassVar[int]
    THROUGH_HASH_FIELD_NUMBER: _ClassVar[int]
    through_seq: int
    through_hash: str
    def __init__(self, through_seq: _Optional[int] = ..., through_hash: _Optional[str] = ...) -> None: ...

class ArchiveAuditResponse(_message.Message):
    __slots__ = ("removed", "archived_through", "anchor_hash")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_THROUGH_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_HASH_FIELD_NUMBER: _ClassVar[int]
    removed: int
    archived_through: int
    anchor_hash: str
    def __init__(self, removed: _Optional[int] = ..., archived_through: _Optional[int] = ..., anchor_hash: _Optional[str] = ...) -> None: ...

class ListPatchesRequest(_message.Message):
    __slots__ = ("target", "state", "agent")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    target: TargetSelector
    state: str
    agent: str
    def __init__(self, target: _Optional[_Union[TargetSelector, _Mapping]] = ..., state: _Optional[str] = ..., agent: _Optional[str] = ...) -> None: ...

class PatchUpdate(_message.Message):
    __slots__ = ("update_id", "name", "classification", "backend", "severity", "available", "agents", "pending", "approved", "declined", "failed", "installed", "reboot_required")
    UPDATE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    APPROVED_FIELD_NUMBER: _ClassVar[int]
    DECLINED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    INSTALLED_FIELD_NUMBER: _ClassVar[int]
    REBOOT_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    update_id: str
    name: str
    classification: str
    backend: str
    severity: str
    available: str
    agents: int
    pending: int
    approved: int
    declined: int
    failed: int
    installed: int
    reboot_required: bool
    def __init__(self, update_id: _Optional[str] = ..., name: _Optional[str] = ..., classification: _Optional[str] = ..., backend: _Optional[str] = ..., severity: _Optional[str] = ..., available: _Optional[str] = ..., agents: _Optional[int] = ..., pending: _Optional[int] = ..., approved: _Optional[int] = ..., declined: _Optional[int] = ..., failed: _Optional[int] = ..., installed: _Optional[int] = ..., reboot_required: _Optional[bool] = ...) -> None: ...

class AgentPatch(_message.Message):
    __slots__ = ("update_id", "name", "current", "available", "classification", "backend", "severity", "published", "size_bytes", "reboot_required", "state", "why", "not_before", "last_status", "last_message", "last_attempt_at", "first_seen")
    UPDATE_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    REBOOT_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    WHY_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    LAST_STATUS_FIELD_NUMBER: _ClassVar[int]
    LAST_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LAST_ATTEMPT_AT_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    update_id: str
    name: str
    current: str
    available: str
    classification: str
    backend: str
    severity: str
    published: float
    size_bytes: int
    reboot_required: bool
    state: str
    why: str
    not_before: float
    last_status: str
    last_message: str
    last_attempt_at: float
    first_seen: float
    def __init__(self, update_id: _Optional[str] = ..., name: _Optional[str] = ..., current: _Optional[str] = ..., available: _Optional[str] = ..., classification: _Optional[str] = ..., backend: _Optional[str] = ..., severity: _Optional[str] = ..., published: _Optional[float] = ..., size_bytes: _Optional[int] = ..., reboot_required: _Optional[bool] = ..., state: _Optional[str] = ..., why: _Optional[str] = ..., not_before: _Optional[float] = ..., last_status: _Optional[str] = ..., last_message: _Optional[str] = ..., last_attempt_at: _Optional[float] = ..., first_seen: _Optional[float] = ...) -> None: ...

class ListPatchesResponse(_message.Message):
    __slots__ = ("updates", "agent_updates", "agent_id", "hostname", "agents", "agents_without_list", "install_requested_at", "install_requested_by")
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    AGENT_UPDATES_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    AGENTS_WITHOUT_LIST_FIELD_NUMBER: _ClassVar[int]
    INSTALL_REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    INSTALL_REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[PatchUpdate]
    agent_updates: _containers.RepeatedCompositeFieldContainer[AgentPatch]
    agent_id: str
    hostname: str
    agents: int
    agents_without_list: int
    install_requested_at: float
    install_requested_by: str
    def __init__(self, updates: _Optional[_Iterable[_Union[PatchUpdate, _Mapping]]] = ..., agent_updates: _Optional[_Iterable[_Union[AgentPatch, _Mapping]]] = ..., agent_id: _Optional[str] = ..., hostname: _Optional[str] = ..., agents: _Optional[int] = ..., agents_without_list: _Optional[int] = ..., install_requested_at: _Optional[float] = ..., install_requested_by: _Optional[str] = ...) -> None: ...

class PatchDecisionRequest(_message.Message):
    __slots__ = ("updates", "target", "comment")
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    COMMENT_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedScalarFieldContainer[str]
    target: TargetSelector
    comment: str
    def __init__(self, updates: _Optional[_Iterable[str]] = ..., target: _Optional[_Union[TargetSelector, _Mapping]] = ..., comment: _Optional[str] = ...) -> None: ...

class PatchDecisionResponse(_message.Message):
    __slots__ = ("records", "changed", "scope", "unknown")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    records: int
    changed: int
    scope: str
    unknown: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, records: _Optional[int] = ..., changed: _Optional[int] = ..., scope: _Optional[str] = ..., unknown: _Optional[_Iterable[str]] = ...) -> None: ...

class InstallPatchesRequest(_message.Message):
    __slots__ = ("target", "now", "timeout_seconds")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    NOW_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    target: TargetSelector
    now: bool
    timeout_seconds: float
    def __init__(self, target: _Optional[_Union[TargetSelector, _Mapping]] = ..., now: _Optional[bool] = ..., timeout_seconds: _Optional[float] = ...) -> None: ...

class PatchInstallEvent(_message.Message):
    __slots__ = ("agent_id", "hostname", "status", "command_id", "updates", "error", "reboot_required")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REBOOT_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    hostname: str
    status: str
    command_id: str
    updates: _containers.RepeatedCompositeFieldContainer[_commands_pb2.UpdateInstallResult]
    error: str
    reboot_required: bool
    def __init__(self, agent_id: _Optional[str] = ..., hostname: _Optional[str] = ..., status: _Optional[str] = ..., command_id: _Optional[str] = ..., updates: _Optional[_Iterable[_Union[_commands_pb2.UpdateInstallResult, _Mapping]]] = ..., error: _Optional[str] = ..., reboot_required: _Optional[bool] = ...) -> None: ...

class PatchReportRequest(_message.Message):
    __slots__ = ("client",)
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    client: str
    def __init__(self, client: _Optional[str] = ...) -> None: ...

class PatchReportAgent(_message.Message):
    __slots__ = ("agent_id", "hostname", "client", "site", "listed", "pending", "approved_missing", "declined", "failed", "last_install_at", "reboot_pending", "compliant", "install_requested_at")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    LISTED_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    APPROVED_MISSING_FIELD_NUMBER: _ClassVar[int]
    DECLINED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    LAST_INSTALL_AT_FIELD_NUMBER: _ClassVar[int]
    REBOOT_PENDING_FIELD_NUMBER: _ClassVar[int]
    COMPLIANT_FIELD_NUMBER: _ClassVar[int]
    INSTALL_REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    hostname: str
    client: str
    site: str
    listed: bool
    pending: int
    approved_missing: int
    declined: int
    failed: int
    last_install_at: float
    reboot_pending: bool
    compliant: bool
    install_requested_at: float
    def __init__(self, agent_id: _Optional[str] = ..., hostname: _Optional[str] = ..., client: _Optional[str] = ..., site: _Optional[str] = ..., listed: _Optional[bool] = ..., pending: _Optional[int] = ..., approved_missing: _Optional[int] = ..., declined: _Optional[int] = ..., failed: _Optional[int] = ..., last_install_at: _Optional[float] = ..., reboot_pending: _Optional[bool] = ..., compliant: _Optional[bool] = ..., install_requested_at: _Optional[float] = ...) -> None: ...

class PatchReportResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[PatchReportAgent]
    def __init__(self, agents: _Optional[_Iterable[_Union[PatchReportAgent, _Mapping]]] = ...) -> None: ...

class ExplainedPatchSetting(_message.Message):
    __slots__ = ("name", "value", "set_by")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    SET_BY_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    set_by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ..., set_by: _Optional[_Iterable[str]] = ...) -> None: ...

class ClientInfo(_message.Message):
    __slots__ = ("id", "name", "created_at", "created_by", "updated_at", "sites", "agents", "has_contract")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    HAS_CONTRACT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    created_at: float
    created_by: str
    updated_at: float
    sites: int
    agents: int
    has_contract: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., created_at: _Optional[float] = ..., created_by: _Optional[str] = ..., updated_at: _Optional[float] = ..., sites: _Optional[int] = ..., agents: _Optional[int] = ..., has_contract: _Optional[bool] = ...) -> None: ...

class CreateClientRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListClientsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListClientsResponse(_message.Message):
    __slots__ = ("clients",)
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    clients: _containers.RepeatedCompositeFieldContainer[ClientInfo]
    def __init__(self, clients: _Optional[_Iterable[_Union[ClientInfo, _Mapping]]] = ...) -> None: ...

class GetClientRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UpdateClientRequest(_message.Message):
    __slots__ = ("name", "new_name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    new_name: str
    def __init__(self, name: _Optional[str] = ..., new_name: _Optional[str] = ...) -> None: ...

class SiteInfo(_message.Message):
    __slots__ = ("id", "client", "name", "time_zone", "created_at", "created_by", "updated_at", "agents")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    client: str
    name: str
    time_zone: str
    created_at: float
    created_by: str
    updated_at: float
    agents: int
    def __init__(self, id: _Optional[str] = ..., client: _Optional[str] = ..., name: _Optional[str] = ..., time_zone: _Optional[str] = ..., created_at: _Optional[float] = ..., created_by: _Optional[str] = ..., updated_at: _Optional[float] = ..., agents: _Optional[int] = ...) -> None: ...

class CreateSiteRequest(_message.Message):
    __slots__ = ("client", "name", "time_zone")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    client: str
    name: str
    time_zone: str
    def __init__(self, client: _Optional[str] = ..., name: _Optional[str] = ..., time_zone: _Optional[str] = ...) -> None: ...

class ListSitesRequest(_message.Message):
    __slots__ = ("client",)
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    client: str
    def __init__(self, client: _Optional[str] = ...) -> None: ...

class ListSitesResponse(_message.Message):
    __slots__ = ("sites",)
    SITES_FIELD_NUMBER: _ClassVar[int]
    sites: _containers.RepeatedCompositeFieldContainer[SiteInfo]
    def __init__(self, sites: _Optional[_Iterable[_Union[SiteInfo, _Mapping]]] = ...) -> None: ...

class GetSiteRequest(_message.Message):
    __slots__ = ("client", "name")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    client: str
    name: str
    def __init__(self, client: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class UpdateSiteRequest(_message.Message):
    __slots__ = ("client", "name", "new_name", "time_zone")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    NEW_NAME_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    client: str
    name: str
    new_name: str
    time_zone: str
    def __init__(self, client: _Optional[str] = ..., name: _Optional[str] = ..., new_name: _Optional[str] = ..., time_zone: _Optional[str] = ...) -> None: ...

class SlaTarget(_message.Message):
    __slots__ = ("severity", "acknowledge_seconds", "resolve_seconds", "clock")
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CLOCK_FIELD_NUMBER: _ClassVar[int]
    severity: str
    acknowledge_seconds: float
    resolve_seconds: float
    clock: str
    def __init__(self, severity: _Optional[str] = ..., acknowledge_seconds: _Optional[float] = ..., resolve_seconds: _Optional[float] = ..., clock: _Optional[str] = ...) -> None: ...

class ContractInfo(_message.Message):
    __slots__ = ("id", "client", "type", "hours_per_period", "period", "warn_below_hours", "rate", "currency", "business_hours", "sla", "created_at", "created_by", "updated_at", "updated_by", "holidays")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    HOURS_PER_PERIOD_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    WARN_BELOW_HOURS_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    BUSINESS_HOURS_FIELD_NUMBER: _ClassVar[int]
    SLA_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_BY_FIELD_NUMBER: _ClassVar[int]
    HOLIDAYS_FIELD_NUMBER: _ClassVar[int]
    id: str
    client: str
    type: str
    hours_per_period: float
    period: str
    warn_below_hours: float
    rate: float
    currency: str
    business_hours: str
    sla: _containers.RepeatedCompositeFieldContainer[SlaTarget]
    created_at: float
    created_by: str
    updated_at: float
    updated_by: str
    holidays: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., client: _Optional[str] = ..., type: _Optional[str] = ..., hours_per_period: _Optional[float] = ..., period: _Optional[str] = ..., warn_below_hours: _Optional[float] = ..., rate: _Optional[float] = ..., currency: _Optional[str] = ..., business_hours: _Optional[str] = ..., sla: _Optional[_Iterable[_Union[SlaTarget, _Mapping]]] = ..., created_at: _Optional[float] = ..., created_by: _Optional[str] = ..., updated_at: _Optional[float] = ..., updated_by: _Optional[str] = ..., holidays: _Optional[_Iterable[str]] = ...) -> None: ...

class ContractTermsRequest(_message.Message):
    __slots__ = ("client", "type", "hours_per_period", "warn_below_hours", "rate", "currency", "business_hours", "sla", "holidays", "clear_holidays")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    HOURS_PER_PERIOD_FIELD_NUMBER: _ClassVar[int]
    WARN_BELOW_HOURS_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    BUSINESS_HOURS_FIELD_NUMBER: _ClassVar[int]
    SLA_FIELD_NUMBER: _ClassVar[int]
    HOLIDAYS_FIELD_NUMBER: _ClassVar[int]
    CLEAR_HOLIDAYS_FIELD_NUMBER: _ClassVar[int]
    client: str
    type: str
    hours_per_period: float
    warn_below_hours: float
    rate: float
    currency: str
    business_hours: str
    sla: _containers.RepeatedCompositeFieldContainer[SlaTarget]
    holidays: _containers.RepeatedScalarFieldContainer[str]
    clear_holidays: bool
    def __init__(self, client: _Optional[str] = ..., type: _Optional[str] = ..., hours_per_period: _Optional[float] = ..., warn_below_hours: _Optional[float] = ..., rate: _Optional[float] = ..., currency: _Optional[str] = ..., business_hours: _Optional[str] = ..., sla: _Optional[_Iterable[_Union[SlaTarget, _Mapping]]] = ..., holidays: _Optional[_Iterable[str]] = ..., clear_holidays: _Optional[bool] = ...) -> None: ...

class ListContractsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListContractsResponse(_message.Message):
    __slots__ = ("contracts",)
    CONTRACTS_FIELD_NUMBER: _ClassVar[int]
    contracts: _containers.RepeatedCompositeFieldContainer[ContractInfo]
    def __init__(self, contracts: _Optional[_Iterable[_Union[ContractInfo, _Mapping]]] = ...) -> None: ...

class GetContractRequest(_message.Message):
    __slots__ = ("client",)
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    client: str
    def __init__(self, client: _Optional[str] = ...) -> None: ...

class TicketEventInfo(_message.Message):
    __slots__ = ("at", "by", "kind", "text")
    AT_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    at: float
    by: str
    kind: str
    text: str
    def __init__(self, at: _Optional[float] = ..., by: _Optional[str] = ..., kind: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class TicketTimeEntry(_message.Message):
    __slots__ = ("at", "by", "minutes", "note", "period", "billable_amount")
    AT_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    MINUTES_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    BILLABLE_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    at: float
    by: str
    minutes: float
    note: str
    period: str
    billable_amount: float
    def __init__(self, at: _Optional[float] = ..., by: _Optional[str] = ..., minutes: _Optional[float] = ..., note: _Optional[str] = ..., period: _Optional[str] = ..., billable_amount: _Optional[float] = ...) -> None: ...

class TicketInfo(_message.Message):
    __slots__ = ("id", "client", "site", "agent_id", "alert_id", "title", "tier", "priority", "status", "assignee", "opened_at", "opened_by", "updated_at", "acknowledged_at", "ack_due_at", "resolve_due_at", "sla_breaches", "resolved_at", "resolution", "closed_at", "archived_at", "archived_by", "events", "time", "verify_code", "snapshot_json", "category")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ALERT_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    OPENED_BY_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    ACKNOWLEDGED_AT_FIELD_NUMBER: _ClassVar[int]
    ACK_DUE_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_DUE_AT_FIELD_NUMBER: _ClassVar[int]
    SLA_BREACHES_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_AT_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_AT_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_BY_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    VERIFY_CODE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_JSON_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    id: int
    client: str
    site: str
    agent_id: str
    alert_id: str
    title: str
    tier: str
    priority: str
    status: str
    assignee: str
    opened_at: float
    opened_by: str
    updated_at: float
    acknowledged_at: float
    ack_due_at: float
    resolve_due_at: float
    sla_breaches: str
    resolved_at: float
    resolution: str
    closed_at: float
    archived_at: float
    archived_by: str
    events: _containers.RepeatedCompositeFieldContainer[TicketEventInfo]
    time: _containers.RepeatedCompositeFieldContainer[TicketTimeEntry]
    verify_code: str
    snapshot_json: str
    category: str
    def __init__(self, id: _Optional[int] = ..., client: _Optional[str] = ..., site: _Optional[str] = ..., agent_id: _Optional[str] = ..., alert_id: _Optional[str] = ..., title: _Optional[str] = ..., tier: _Optional[str] = ..., priority: _Optional[str] = ..., status: _Optional[str] = ..., assignee: _Optional[str] = ..., opened_at: _Optional[float] = ..., opened_by: _Optional[str] = ..., updated_at: _Optional[float] = ..., acknowledged_at: _Optional[float] = ..., ack_due_at: _Optional[float] = ..., resolve_due_at: _Optional[float] = ..., sla_breaches: _Optional[str] = ..., resolved_at: _Optional[float] = ..., resolution: _Optional[str] = ..., closed_at: _Optional[float] = ..., archived_at: _Optional[float] = ..., archived_by: _Optional[str] = ..., events: _Optional[_Iterable[_Union[TicketEventInfo, _Mapping]]] = ..., time: _Optional[_Iterable[_Union[TicketTimeEntry, _Mapping]]] = ..., verify_code: _Optional[str] = ..., snapshot_json: _Optional[str] = ..., category: _Optional[str] = ...) -> None: ...

class OpenTicketRequest(_message.Message):
    __slots__ = ("client", "title", "priority", "tier", "site", "agent", "category")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    client: str
    title: str
    priority: str
    tier: str
    site: str
    agent: str
    category: str
    def __init__(self, client: _Optional[str] = ..., title: _Optional[str] = ..., priority: _Optional[str] = ..., tier: _Optional[str] = ..., site: _Optional[str] = ..., agent: _Optional[str] = ..., category: _Optional[str] = ...) -> None: ...

class ListTicketsRequest(_message.Message):
    __slots__ = ("client", "status", "tier", "archived", "limit")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    ARCHIVED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    client: str
    status: str
    tier: str
    archived: bool
    limit: int
    def __init__(self, client: _Optional[str] = ..., status: _Optional[str] = ..., tier: _Optional[str] = ..., archived: _Optional[bool] = ..., limit: _Optional[int] = ...) -> None: ...

class ListTicketsResponse(_message.Message):
    __slots__ = ("tickets",)
    TICKETS_FIELD_NUMBER: _ClassVar[int]
    tickets: _containers.RepeatedCompositeFieldContainer[TicketInfo]
    def __init__(self, tickets: _Optional[_Iterable[_Union[TicketInfo, _Mapping]]] = ...) -> None: ...

class GetTicketRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class NoteTicketRequest(_message.Message):
    __slots__ = ("id", "text", "status")
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    id: int
    text: str
    status: str
    def __init__(self, id: _Optional[int] = ..., text: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class AssignTicketRequest(_message.Message):
    __slots__ = ("id", "assignee")
    ID_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    id: int
    assignee: str
    def __init__(self, id: _Optional[int] = ..., assignee: _Optional[str] = ...) -> None: ...

class EscalateTicketRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: int
    reason: str
    def __init__(self, id: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ResolveTicketRequest(_message.Message):
    __slots__ = ("id", "resolution")
    ID_FIELD_NUMBER: _ClassVar[int]
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    id: int
    resolution: str
    def __init__(self, id: _Optional[int] = ..., resolution: _Optional[str] = ...) -> None: ...

class ReopenTicketRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: int
    reason: str
    def __init__(self, id: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class CloseTicketRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class ArchiveTicketRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class LogTicketTimeRequest(_message.Message):
    __slots__ = ("id", "minutes", "note")
    ID_FIELD_NUMBER: _ClassVar[int]
    MINUTES_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    id: int
    minutes: float
    note: str
    def __init__(self, id: _Optional[int] = ..., minutes: _Optional[float] = ..., note: _Optional[str] = ...) -> None: ...

class LogTicketTimeResponse(_message.Message):
    __slots__ = ("ticket", "used_hours", "hours_left", "warning", "billable_amount")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    USED_HOURS_FIELD_NUMBER: _ClassVar[int]
    HOURS_LEFT_FIELD_NUMBER: _ClassVar[int]
    WARNING_FIELD_NUMBER: _ClassVar[int]
    BILLABLE_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ticket: TicketInfo
    used_hours: float
    hours_left: float
    warning: str
    billable_amount: float
    def __init__(self, ticket: _Optional[_Union[TicketInfo, _Mapping]] = ..., used_hours: _Optional[float] = ..., hours_left: _Optional[float] = ..., warning: _Optional[str] = ..., billable_amount: _Optional[float] = ...) -> None: ...

class ListPatchRunsRequest(_message.Message):
    __slots__ = ("window", "limit")
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    window: str
    limit: int
    def __init__(self, window: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class PatchRunRing(_message.Message):
    __slots__ = ("name", "state", "held", "agents", "installed", "failed", "missed", "held_agents")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    INSTALLED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    MISSED_FIELD_NUMBER: _ClassVar[int]
    HELD_AGENTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: str
    held: str
    agents: int
    installed: int
    failed: int
    missed: int
    held_agents: int
    def __init__(self, name: _Optional[str] = ..., state: _Optional[str] = ..., held: _Optional[str] = ..., agents: _Optional[int] = ..., installed: _Optional[int] = ..., failed: _Optional[int] = ..., missed: _Optional[int] = ..., held_agents: _Optional[int] = ...) -> None: ...

class PatchRunInfo(_message.Message):
    __slots__ = ("id", "window", "starts_at", "ends_at", "state", "rings", "steps", "installed", "failed", "missed", "held")
    class StepsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RINGS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    INSTALLED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    MISSED_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    id: str
    window: str
    starts_at: float
    ends_at: float
    state: str
    rings: _containers.RepeatedCompositeFieldContainer[PatchRunRing]
    steps: _containers.ScalarMap[str, int]
    installed: _containers.RepeatedScalarFieldContainer[str]
    failed: _containers.RepeatedScalarFieldContainer[str]
    missed: _containers.RepeatedScalarFieldContainer[str]
    held: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., window: _Optional[str] = ..., starts_at: _Optional[float] = ..., ends_at: _Optional[float] = ..., state: _Optional[str] = ..., rings: _Optional[_Iterable[_Union[PatchRunRing, _Mapping]]] = ..., steps: _Optional[_Mapping[str, int]] = ..., installed: _Optional[_Iterable[str]] = ..., failed: _Optional[_Iterable[str]] = ..., missed: _Optional[_Iterable[str]] = ..., held: _Optional[_Iterable[str]] = ...) -> None: ...

class ListPatchRunsResponse(_message.Message):
    __slots__ = ("runs",)
    RUNS_FIELD_NUMBER: _ClassVar[int]
    runs: _containers.RepeatedCompositeFieldContainer[PatchRunInfo]
    def __init__(self, runs: _Optional[_Iterable[_Union[PatchRunInfo, _Mapping]]] = ...) -> None: ...

class ContractReportRequest(_message.Message):
    __slots__ = ("client", "month", "time_zone", "html")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    TIME_ZONE_FIELD_NUMBER: _ClassVar[int]
    HTML_FIELD_NUMBER: _ClassVar[int]
    client: str
    month: str
    time_zone: str
    html: bool
    def __init__(self, client: _Optional[str] = ..., month: _Optional[str] = ..., time_zone: _Optional[str] = ..., html: _Optional[bool] = ...) -> None: ...

class ContractReportResponse(_message.Message):
    __slots__ = ("report_json", "html")
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    HTML_FIELD_NUMBER: _ClassVar[int]
    report_json: str
    html: str
    def __init__(self, report_json: _Optional[str] = ..., html: _Optional[str] = ...) -> None: ...

class TrendsRequest(_message.Message):
    __slots__ = ("since_seconds", "client", "limit")
    SINCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    since_seconds: float
    client: str
    limit: int
    def __init__(self, since_seconds: _Optional[float] = ..., client: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class TrendsResponse(_message.Message):
    __slots__ = ("report_json",)
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    report_json: str
    def __init__(self, report_json: _Optional[str] = ...) -> None: ...
