from rmm_proto import commands_pb2 as _commands_pb2
from rmm_proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HelpRequest(_message.Message):
    __slots__ = ("text", "snapshot_json", "local_user")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_JSON_FIELD_NUMBER: _ClassVar[int]
    LOCAL_USER_FIELD_NUMBER: _ClassVar[int]
    text: str
    snapshot_json: bytes
    local_user: str
    def __init__(self, text: _Optional[str] = ..., snapshot_json: _Optional[bytes] = ..., local_user: _Optional[str] = ...) -> None: ...

class HelpTicket(_message.Message):
    __slots__ = ("ticket_id", "verify_code", "tier", "client")
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    VERIFY_CODE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ticket_id: int
    verify_code: str
    tier: str
    client: str
    def __init__(self, ticket_id: _Optional[int] = ..., verify_code: _Optional[str] = ..., tier: _Optional[str] = ..., client: _Optional[str] = ...) -> None: ...

class VerifyCodeRequest(_message.Message):
    __slots__ = ("code",)
    CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    def __init__(self, code: _Optional[str] = ...) -> None: ...

class VerifyCodeResponse(_message.Message):
    __slots__ = ("match", "ticket_id", "tier", "assignee", "status", "title", "opened_by", "opened_at")
    MATCH_FIELD_NUMBER: _ClassVar[int]
    TICKET_ID_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    ASSIGNEE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    OPENED_BY_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    match: bool
    ticket_id: int
    tier: str
    assignee: str
    status: str
    title: str
    opened_by: str
    opened_at: float
    def __init__(self, match: _Optional[bool] = ..., ticket_id: _Optional[int] = ..., tier: _Optional[str] = ..., assignee: _Optional[str] = ..., status: _Optional[str] = ..., title: _Optional[str] = ..., opened_by: _Optional[str] = ..., opened_at: _Optional[float] = ...) -> None: ...

class RotateCredentialRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RotateCredentialResponse(_message.Message):
    __slots__ = ("credential",)
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    credential: str
    def __init__(self, credential: _Optional[str] = ...) -> None: ...

class HostFacts(_message.Message):
    __slots__ = ("hostname", "os", "os_name", "os_version", "kernel", "arch")
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    OS_FIELD_NUMBER: _ClassVar[int]
    OS_NAME_FIELD_NUMBER: _ClassVar[int]
    OS_VERSION_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    ARCH_FIELD_NUMBER: _ClassVar[int]
    hostname: str
    os: str
    os_name: str
    os_version: str
    kernel: str
    arch: str
    def __init__(self, hostname: _Optional[str] = ..., os: _Optional[str] = ..., os_name: _Optional[str] = ..., os_version: _Optional[str] = ..., kernel: _Optional[str] = ..., arch: _Optional[str] = ...) -> None: ...

class EnrollRequest(_message.Message):
    __slots__ = ("token", "host", "tags", "agent_version", "csr_pem")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    token: str
    host: HostFacts
    tags: _containers.RepeatedScalarFieldContainer[str]
    agent_version: str
    csr_pem: str
    def __init__(self, token: _Optional[str] = ..., host: _Optional[_Union[HostFacts, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., agent_version: _Optional[str] = ..., csr_pem: _Optional[str] = ...) -> None: ...

class EnrollResponse(_message.Message):
    __slots__ = ("agent_id", "credential", "client", "site", "report_interval_seconds", "command_public_key", "client_certificate_pem", "mtls_port")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    REPORT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    CLIENT_CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    MTLS_PORT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    credential: str
    client: str
    site: str
    report_interval_seconds: int
    command_public_key: bytes
    client_certificate_pem: str
    mtls_port: int
    def __init__(self, agent_id: _Optional[str] = ..., credential: _Optional[str] = ..., client: _Optional[str] = ..., site: _Optional[str] = ..., report_interval_seconds: _Optional[int] = ..., command_public_key: _Optional[bytes] = ..., client_certificate_pem: _Optional[str] = ..., mtls_port: _Optional[int] = ...) -> None: ...

class CollectorResult(_message.Message):
    __slots__ = ("name", "ok", "error", "duration_seconds", "samples", "info_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    INFO_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    ok: bool
    error: str
    duration_seconds: float
    samples: _containers.RepeatedCompositeFieldContainer[_common_pb2.Sample]
    info_json: bytes
    def __init__(self, name: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., samples: _Optional[_Iterable[_Union[_common_pb2.Sample, _Mapping]]] = ..., info_json: _Optional[bytes] = ...) -> None: ...

class Inventory(_message.Message):
    __slots__ = ("hash", "json")
    HASH_FIELD_NUMBER: _ClassVar[int]
    JSON_FIELD_NUMBER: _ClassVar[int]
    hash: str
    json: bytes
    def __init__(self, hash: _Optional[str] = ..., json: _Optional[bytes] = ...) -> None: ...

class Report(_message.Message):
    __slots__ = ("sequence", "collected_at", "interval_seconds", "agent_version", "host", "collectors", "inventory_hash", "inventory", "dropped_reports", "self_updatable", "skipped_sequences")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    COLLECTED_AT_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    COLLECTORS_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_HASH_FIELD_NUMBER: _ClassVar[int]
    INVENTORY_FIELD_NUMBER: _ClassVar[int]
    DROPPED_REPORTS_FIELD_NUMBER: _ClassVar[int]
    SELF_UPDATABLE_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    collected_at: float
    interval_seconds: int
    agent_version: str
    host: HostFacts
    collectors: _containers.RepeatedCompositeFieldContainer[CollectorResult]
    inventory_hash: str
    inventory: Inventory
    dropped_reports: int
    self_updatable: bool
    skipped_sequences: int
    def __init__(self, sequence: _Optional[int] = ..., collected_at: _Optional[float] = ..., interval_seconds: _Optional[int] = ..., agent_version: _Optional[str] = ..., host: _Optional[_Union[HostFacts, _Mapping]] = ..., collectors: _Optional[_Iterable[_Union[CollectorResult, _Mapping]]] = ..., inventory_hash: _Optional[str] = ..., inventory: _Optional[_Union[Inventory, _Mapping]] = ..., dropped_reports: _Optional[int] = ..., self_updatable: _Optional[bool] = ..., skipped_sequences: _Optional[int] = ...) -> None: ...

class ReportAck(_message.Message):
    __slots__ = ("sequence", "need_inventory", "report_interval_seconds", "rejected", "update", "rotate_credential", "next_sequence")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    NEED_INVENTORY_FIELD_NUMBER: _ClassVar[int]
    REPORT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    UPDATE_FIELD_NUMBER: _ClassVar[int]
    ROTATE_CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    NEXT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    need_inventory: bool
    report_interval_seconds: int
    rejected: str
    update: UpdateOffer
    rotate_credential: bool
    next_sequence: int
    def __init__(self, sequence: _Optional[int] = ..., need_inventory: _Optional[bool] = ..., report_interval_seconds: _Optional[int] = ..., rejected: _Optional[str] = ..., update: _Optional[_Union[UpdateOffer, _Mapping]] = ..., rotate_credential: _Optional[bool] = ..., next_sequence: _Optional[int] = ...) -> None: ...

class UpdateOffer(_message.Message):
    __slots__ = ("version", "sha256", "size")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    version: str
    sha256: str
    size: int
    def __init__(self, version: _Optional[str] = ..., sha256: _Optional[str] = ..., size: _Optional[int] = ...) -> None: ...

class DownloadUpdateRequest(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: str
    def __init__(self, version: _Optional[str] = ...) -> None: ...

class UpdateChunk(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...
