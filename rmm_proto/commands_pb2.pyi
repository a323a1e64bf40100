from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConsentMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSENT_UNATTENDED: _ClassVar[ConsentMode]
    CONSENT_NOTIFY: _ClassVar[ConsentMode]
    CONSENT_ASK: _ClassVar[ConsentMode]

class ServiceOperation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVICE_OPERATION_UNSPECIFIED: _ClassVar[ServiceOperation]
    SERVICE_START: _ClassVar[ServiceOperation]
    SERVICE_STOP: _ClassVar[ServiceOperation]
    SERVICE_RESTART: _ClassVar[ServiceOperation]

class UpdateInstallStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPDATE_INSTALL_STATUS_UNSPECIFIED: _ClassVar[UpdateInstallStatus]
    UPDATE_INSTALLED: _ClassVar[UpdateInstallStatus]
    UPDATE_FAILED: _ClassVar[UpdateInstallStatus]
    UPDATE_SKIPPED: _ClassVar[UpdateInstallStatus]
    UPDATE_LOCKED: _ClassVar[UpdateInstallStatus]
    UPDATE_INTERRUPTED: _ClassVar[UpdateInstallStatus]

class CommandStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMMAND_STATUS_UNSPECIFIED: _ClassVar[CommandStatus]
    COMMAND_QUEUED: _ClassVar[CommandStatus]
    COMMAND_SENT: _ClassVar[CommandStatus]
    COMMAND_RUNNING: _ClassVar[CommandStatus]
    COMMAND_SUCCEEDED: _ClassVar[CommandStatus]
    COMMAND_FAILED: _ClassVar[CommandStatus]
    COMMAND_TIMED_OUT: _ClassVar[CommandStatus]
    COMMAND_REFUSED: _ClassVar[CommandStatus]
    COMMAND_DECLINED: _ClassVar[CommandStatus]
    COMMAND_EXPIRED: _ClassVar[CommandStatus]
    COMMAND_CANCELLED: _ClassVar[CommandStatus]
CONSENT_UNATTENDED: ConsentMode
CONSENT_NOTIFY: ConsentMode
CONSENT_ASK: ConsentMode
SERVICE_OPERATION_UNSPECIFIED: ServiceOperation
SERVICE_START: ServiceOperation
SERVICE_STOP: ServiceOperation
SERVICE_RESTART: ServiceOperation
UPDATE_INSTALL_STATUS_UNSPECIFIED: UpdateInstallStatus
UPDATE_INSTALLED: UpdateInstallStatus
UPDATE_FAILED: UpdateInstallStatus
UPDATE_SKIPPED: UpdateInstallStatus
UPDATE_LOCKED: UpdateInstallStatus
UPDATE_INTERRUPTED: UpdateInstallStatus
COMMAND_STATUS_UNSPECIFIED: CommandStatus
COMMAND_QUEUED: CommandStatus
COMMAND_SENT: CommandStatus
COMMAND_RUNNING: CommandStatus
COMMAND_SUCCEEDED: CommandStatus
COMMAND_FAILED: CommandStatus
COMMAND_TIMED_OUT: CommandStatus
COMMAND_REFUSED: CommandStatus
COMMAND_DECLINED: CommandStatus
COMMAND_EXPIRED: CommandStatus
COMMAND_CANCELLED: CommandStatus

class Command(_message.Message):
    __slots__ = ("id", "agent_id", "issued_at", "expires_at", "timeout_seconds", "operator", "consent", "run_id", "msp", "ticket", "maintenance_window", "run_script", "list_processes", "kill_process", "list_services", "service_control", "reboot", "push_file", "pull_file", "collect_now", "install_updates", "driver_package")
    ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    CONSENT_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    MSP_FIELD_NUMBER: _ClassVar[int]
    TICKET_FIELD_NUMBER: _ClassVar[int]
    MAINTENANCE_WINDOW_FIELD_NUMBER: _ClassVar[int]
    RUN_SCRIPT_FIELD_NUMBER: _ClassVar[int]
    LIST_PROCESSES_FIELD_NUMBER: _ClassVar[int]
    KILL_PROCESS_FIELD_NUMBER: _ClassVar[int]
    LIST_SERVICES_FIELD_NUMBER: _ClassVar[int]
    SERVICE_CONTROL_FIELD_NUMBER: _ClassVar[int]
    REBOOT_FIELD_NUMBER: _ClassVar[int]
    PUSH_FILE_FIELD_NUMBER: _ClassVar[int]
    PULL_FILE_FIELD_NUMBER: _ClassVar[int]
    COLLECT_NOW_FIELD_NUMBER: _ClassVar[int]
    INSTALL_UPDATES_FIELD_NUMBER: _ClassVar[int]
    DRIVER_PACKAGE_FIELD_NUMBER: _ClassVar[int]
    id: str
    agent_id: str
    issued_at: float
    expires_at: float
    timeout_seconds: float
    operator: str
    consent: ConsentMode
    run_id: str
    msp: str
    ticket: int
    maintenance_window: str
    run_script: RunScript
    list_processes: ListProcesses
    kill_process: KillProcess
    list_services: ListServices
    service_control: ServiceControl
    reboot: Reboot
    push_file: PushFile
    pull_file: PullFile
    collect_now: CollectNow
    install_updates: InstallUpdates
    driver_package: DriverPackage
    def __init__(self, id: _Optional[str] = ..., agent_id: _Optional[str] = ..., issued_at: _Optional[float] = ..., expires_at: _Optional[float] = ..., timeout_seconds: _Optional[float] = ..., operator: _Optional[str] = ..., consent: _Optional[_Union[ConsentMode, str]] = ..., run_id: _Optional[str] = ..., msp: _Optional[str] = ..., ticket: _Optional[int] = ..., maintenance_window: _Optional[str] = ..., run_script: _Optional[_Union[RunScript, _Mapping]] = ..., list_processes: _Optional[_Union[ListProcesses, _Mapping]] = ..., kill_process: _Optional[_Union[KillProcess, _Mapping]] = ..., list_services: _Optional[_Union[ListServices, _Mapping]] = ..., service_control: _Optional[_Union[ServiceControl, _Mapping]] = ..., reboot: _Optional[_Union[Reboot, _Mapping]] = ..., push_file: _Optional[_Union[PushFile, _Mapping]] = ..., pull_file: _Optional[_Union[PullFile, _Mapping]] = ..., collect_now: _Optional[_Union[CollectNow, _Mapping]] = ..., install_updates: _Optional[_Union[InstallUpdates, _Mapping]] = ..., driver_package: _Optional[_Union[DriverPackage, _Mapping]] = ...) -> None: ...

class SignedCommand(_message.Message):
    __slots__ = ("command", "signature")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    command: bytes
    signature: bytes
    def __init__(self, command: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class RunScript(_message.Message):
    __slots__ = ("shell", "body", "args", "env", "working_directory", "library_name", "output_limit_bytes", "params")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class ParamsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SHELL_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    WORKING_DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    LIBRARY_NAME_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_LIMIT_BYTES_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    shell: str
    body: str
    args: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    working_directory: str
    library_name: str
    output_limit_bytes: int
    params: _containers.ScalarMap[str, str]
    def __init__(self, shell: _Optional[str] = ..., body: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., working_directory: _Optional[str] = ..., library_name: _Optional[str] = ..., output_limit_bytes: _Optional[int] = ..., params: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ScriptResult(_message.Message):
    __slots__ = ("exit_code", "stdout", "stderr", "stdout_truncated", "stderr_truncated", "timed_out")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    STDOUT_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    STDERR_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    stdout: str
    stderr: str
    stdout_truncated: bool
    stderr_truncated: bool
    timed_out: bool
    def __init__(self, exit_code: _Optional[int] = ..., stdout: _Optional[str] = ..., stderr: _Optional[str] = ..., stdout_truncated: _Optional[bool] = ..., stderr_truncated: _Optional[bool] = ..., timed_out: _Optional[bool] = ...) -> None: ...

class ListProcesses(_message.Message):
    __slots__ = ("name", "limit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    limit: int
    def __init__(self, name: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ProcessInfo(_message.Message):
    __slots__ = ("pid", "name", "user", "cpu_ratio", "memory_rss_bytes", "cmdline", "started_at", "status")
    PID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    CPU_RATIO_FIELD_NUMBER: _ClassVar[int]
    MEMORY_RSS_BYTES_FIELD_NUMBER: _ClassVar[int]
    CMDLINE_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    pid: int
    name: str
    user: str
    cpu_ratio: float
    memory_rss_bytes: int
    cmdline: str
    started_at: float
    status: str
    def __init__(self, pid: _Optional[int] = ..., name: _Optional[str] = ..., user: _Optional[str] = ..., cpu_ratio: _Optional[float] = ..., memory_rss_bytes: _Optional[int] = ..., cmdline: _Optional[str] = ..., started_at: _Optional[float] = ..., status: _Optional[str] = ...) -> None: ...

class ProcessList(_message.Message):
    __slots__ = ("processes",)
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    processes: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    def __init__(self, processes: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ...) -> None: ...

class KillProcess(_message.Message):
    __slots__ = ("pid", "name", "force")
    PID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    pid: int
    name: str
    force: bool
    def __init__(self, pid: _Optional[int] = ..., name: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class KillResult(_message.Message):
    __slots__ = ("killed", "errors")
    KILLED_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    killed: _containers.RepeatedCompositeFieldContainer[ProcessInfo]
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, killed: _Optional[_Iterable[_Union[ProcessInfo, _Mapping]]] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class ListServices(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ServiceInfo(_message.Message):
    __slots__ = ("name", "description", "state", "start_mode")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    START_MODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    state: str
    start_mode: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., state: _Optional[str] = ..., start_mode: _Optional[str] = ...) -> None: ...

class ServiceList(_message.Message):
    __slots__ = ("services",)
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[ServiceInfo]
    def __init__(self, services: _Optional[_Iterable[_Union[ServiceInfo, _Mapping]]] = ...) -> None: ...

class ServiceControl(_message.Message):
    __slots__ = ("name", "operation")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    operation: ServiceOperation
    def __init__(self, name: _Optional[str] = ..., operation: _Optional[_Union[ServiceOperation, str]] = ...) -> None: ...

class ServiceResult(_message.Message):
    __slots__ = ("service", "output")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    service: ServiceInfo
    output: str
    def __init__(self, service: _Optional[_Union[ServiceInfo, _Mapping]] = ..., output: _Optional[str] = ...) -> None: ...

class Reboot(_message.Message):
    __slots__ = ("delay_seconds", "reason")
    DELAY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    delay_seconds: float
    reason: str
    def __init__(self, delay_seconds: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class LoggedInUser(_message.Message):
    __slots__ = ("name", "terminal", "host", "started_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    terminal: str
    host: str
    started_at: float
    def __init__(self, name: _Optional[str] = ..., terminal: _Optional[str] = ..., host: _Optional[str] = ..., started_at: _Optional[float] = ...) -> None: ...

class RebootResult(_message.Message):
    __slots__ = ("sessions", "requested_at", "back_at", "boot_time_before", "boot_time_after")
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    BACK_AT_FIELD_NUMBER: _ClassVar[int]
    BOOT_TIME_BEFORE_FIELD_NUMBER: _ClassVar[int]
    BOOT_TIME_AFTER_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[LoggedInUser]
    requested_at: float
    back_at: float
    boot_time_before: float
    boot_time_after: float
    def __init__(self, sessions: _Optional[_Iterable[_Union[LoggedInUser, _Mapping]]] = ..., requested_at: _Optional[float] = ..., back_at: _Optional[float] = ..., boot_time_before: _Optional[float] = ..., boot_time_after: _Optional[float] = ...) -> None: ...

class PushFile(_message.Message):
    __slots__ = ("path", "data", "sha256", "mode", "overwrite")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    OVERWRITE_FIELD_NUMBER: _ClassVar[int]
    path: str
    data: bytes
    sha256: str
    mode: int
    overwrite: bool
    def __init__(self, path: _Optional[str] = ..., data: _Optional[bytes] = ..., sha256: _Optional[str] = ..., mode: _Optional[int] = ..., overwrite: _Optional[bool] = ...) -> None: ...

class PullFile(_message.Message):
    __slots__ = ("path", "max_bytes")
    PATH_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    path: str
    max_bytes: int
    def __init__(self, path: _Optional[str] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class FileResult(_message.Message):
    __slots__ = ("path", "size", "sha256", "data")
    PATH_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    path: str
    size: int
    sha256: str
    data: bytes
    def __init__(self, path: _Optional[str] = ..., size: _Optional[int] = ..., sha256: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class CollectNow(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CollectResult(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class InstallUpdates(_message.Message):
    __slots__ = ("update_ids", "backend")
    UPDATE_IDS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    update_ids: _containers.RepeatedScalarFieldContainer[str]
    backend: str
    def __init__(self, update_ids: _Optional[_Iterable[str]] = ..., backend: _Optional[str] = ...) -> None: ...

class DriverPackage(_message.Message):
    __slots__ = ("operation", "file_name", "data", "sha256", "device", "kind", "package")
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    operation: str
    file_name: str
    data: bytes
    sha256: str
    device: str
    kind: str
    package: str
    def __init__(self, operation: _Optional[str] = ..., file_name: _Optional[str] = ..., data: _Optional[bytes] = ..., sha256: _Optional[str] = ..., device: _Optional[str] = ..., kind: _Optional[str] = ..., package: _Optional[str] = ...) -> None: ...

class DriverPackageResult(_message.Message):
    __slots__ = ("kind", "package", "version", "previous", "commands", "output", "reboot_required")
    KIND_FIELD_NUMBER: _ClassVar[int]
    PACKAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    REBOOT_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    kind: str
    package: str
    version: str
    previous: str
    commands: _containers.RepeatedScalarFieldContainer[str]
    output: str
    reboot_required: bool
    def __init__(self, kind: _Optional[str] = ..., package: _Optional[str] = ..., version: _Optional[str] = ..., previous: _Optional[str] = ..., commands: _Optional[_Iterable[str]] = ..., output: _Optional[str] = ..., reboot_required: _Optional[bool] = ...) -> None: ...

class UpdateInstallResult(_message.Message):
    __slots__ = ("update_id", "status", "message", "version", "reboot_required")
    UPDATE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REBOOT_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    update_id: str
    status: UpdateInstallStatus
    message: str
    version: str
    reboot_required: bool
    def __init__(self, update_id: _Optional[str] = ..., status: _Optional[_Union[UpdateInstallStatus, str]] = ..., message: _Optional[str] = ..., version: _Optional[str] = ..., reboot_required: _Optional[bool] = ...) -> None: ...

class InstallUpdatesResult(_message.Message):
    __slots__ = ("updates", "reboot_required")
    UPDATES_FIELD_NUMBER: _ClassVar[int]
    REBOOT_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    updates: _containers.RepeatedCompositeFieldContainer[UpdateInstallResult]
    reboot_required: bool
    def __init__(self, updates: _Optional[_Iterable[_Union[UpdateInstallResult, _Mapping]]] = ..., reboot_required: _Optional[bool] = ...) -> None: ...

class CommandResult(_message.Message):
    __slots__ = ("command_id", "status", "error", "started_at", "finished_at", "duplicate", "script", "processes", "kill", "services", "service", "reboot", "file", "collect", "install_updates", "driver_package")
    COMMAND_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    SCRIPT_FIELD_NUMBER: _ClassVar[int]
    PROCESSES_FIELD_NUMBER: _ClassVar[int]
    KILL_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    REBOOT_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    COLLECT_FIELD_NUMBER: _ClassVar[int]
    INSTALL_UPDATES_FIELD_NUMBER: _ClassVar[int]
    DRIVER_PACKAGE_FIELD_NUMBER: _ClassVar[int]
    command_id: str
    status: CommandStatus
    error: str
    started_at: float
    finished_at: float
    duplicate: bool
    script: ScriptResult
    processes: ProcessList
    kill: KillResult
    services: ServiceList
    service: ServiceResult
    reboot: RebootResult
    file: FileResult
    collect: CollectResult
    install_updates: InstallUpdatesResult
    driver_package: DriverPackageResult
    def __init__(self, command_id: _Optional[str] = ..., status: _Optional[_Union[CommandStatus, str]] = ..., error: _Optional[str] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., duplicate: _Optional[bool] = ..., script: _Optional[_Union[ScriptResult, _Mapping]] = ..., processes: _Optional[_Union[ProcessList, _Mapping]] = ..., kill: _Optional[_Union[KillResult, _Mapping]] = ..., services: _Optional[_Union[ServiceList, _Mapping]] = ..., service: _Optional[_Union[ServiceResult, _Mapping]] = ..., reboot: _Optional[_Union[RebootResult, _Mapping]] = ..., file: _Optional[_Union[FileResult, _Mapping]] = ..., collect: _Optional[_Union[CollectResult, _Mapping]] = ..., install_updates: _Optional[_Union[InstallUpdatesResult, _Mapping]] = ..., driver_package: _Optional[_Union[DriverPackageResult, _Mapping]] = ...) -> None: ...

class CommandHello(_message.Message):
    __slots__ = ("agent_started_at", "boot_time", "agent_version", "disconnected_at", "disconnect_reason")
    AGENT_STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    BOOT_TIME_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    DISCONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    DISCONNECT_REASON_FIELD_NUMBER: _ClassVar[int]
    agent_started_at: float
    boot_time: float
    agent_version: str
    disconnected_at: float
    disconnect_reason: str
    def __init__(self, agent_started_at: _Optional[float] = ..., boot_time: _Optional[float] = ..., agent_version: _Optional[str] = ..., disconnected_at: _Optional[float] = ..., disconnect_reason: _Optional[str] = ...) -> None: ...

class AgentCommandMessage(_message.Message):
    __slots__ = ("hello", "result")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    hello: CommandHello
    result: CommandResult
    def __init__(self, hello: _Optional[_Union[CommandHello, _Mapping]] = ..., result: _Optional[_Union[CommandResult, _Mapping]] = ...) -> None: ...

class ServerCommandMessage(_message.Message):
    __slots__ = ("command", "result_stored")
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    RESULT_STORED_FIELD_NUMBER: _ClassVar[int]
    command: SignedCommand
    result_stored: str
    def __init__(self, command: _Optional[_Union[SignedCommand, _Mapping]] = ..., result_stored: _Optional[str] = ...) -> None: ...
