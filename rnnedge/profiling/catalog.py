"""Device profiles: the YAML schema, the shipped catalog and the user's own `devices/`.

A device profile is one YAML file per device. Profiles in `./devices/` of the working
directory take precedence over the catalog shipped with rnnedge. Files are read with
PyYAML's safe loader and validated against the schema; an error names the file and the
field.

Schema versions:
    1  hardware, recognize, providers, quantization, host, measurements.
    2  adds the optional `remote` mapping (`ssh`: the `[user@]host` that `rnnedge profile
       --device` reaches the board at, `port`, `rnnedge`: the command on the board).
       A version 1 file is read as version 2 without change, since every version 1 file
       is a valid version 2 file, and is written back as version 2.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rnnedge.errors import DeviceProfileError
from rnnedge.host import board_info, cpu_info
from rnnedge.profiling.measurement_schema import check_measurement

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
USER_DEVICES_DIR = Path("devices")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
NAME_RULE = (
    "a device name starts with a lowercase letter or a digit, followed by at most 63 "
    "lowercase letters, digits, '.', '-' or '_'"
)

# field -> (type, required); a nested mapping is checked one level deep below.
_TOP_LEVEL: dict[str, tuple[type | tuple[type, ...], bool]] = {
    "schema_version": (int, True),
    "name": (str, True),
    "description": (str, False),
    "hardware": (dict, True),
    "recognize": (dict, True),
    "providers": (dict, True),
    "quantization": (dict, False),
    "host": (dict, False),
    "remote": (dict, False),
    "measurements": (list, False),
}
_RECOGNIZE = {"arch", "device_tree_model", "nv_tegra_release", "cpu_model", "generic"}
_PROVIDERS = {"preference", "options"}
_QUANTIZATION = {
    "mode", "reduce_range", "per_channel", "calibration_method", "gru_int8_min_hidden",
}  # fmt: skip
_REMOTE: dict[str, type] = {"ssh": str, "port": int, "rnnedge": str}


@dataclass
class DeviceProfile:
    """One device: hardware facts, how to recognize it, providers and measurements."""

    name: str
    data: dict[str, Any]
    path: Path | None = None
    measurements: list[dict[str, Any]] = field(default_factory=list)

    @property
    def provider_preference(self) -> list[str]:
        return list(self.data.get("providers", {}).get("preference", []))

    @property
    def provider_options(self) -> dict[str, dict[str, Any]]:
        return dict(self.data.get("providers", {}).get("options", {}) or {})

    @property
    def quantization(self) -> dict[str, Any]:
        return dict(self.data.get("quantization", {}) or {})

    @property
    def remote(self) -> dict[str, Any] | None:
        """The board's SSH address (`ssh`, `port`, `rnnedge`), or None for a local device."""
        remote = self.data.get("remote")
        return dict(remote) if remote else None

    def to_dict(self) -> dict[str, Any]:
        data = copy.deepcopy(self.data)
        data["measurements"] = copy.deepcopy(self.measurements)
        return data


def catalog_dir() -> Path:
    """Return the folder of the shipped catalog: inside the wheel, or `devices/` of a checkout."""
    packaged = Path(__file__).resolve().parent.parent / "_catalog"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "devices"


def is_catalog_folder(folder: str | os.PathLike[str]) -> bool:
    """Return whether `folder` is a shipped device catalog: this installation's, or the
    `devices/` folder at the root of any rnnedge source checkout.

    A clone of the repository contains its own copy of the catalog, which an rnnedge installed
    from elsewhere would otherwise take for a folder of measurements.
    """
    path = Path(folder).resolve()
    if path == catalog_dir().resolve():
        return True
    if path.name != "devices":
        return False
    root = path.parent
    return _names_rnnedge(root / "pyproject.toml") and (root / "rnnedge" / "__init__.py").is_file()


def _names_rnnedge(pyproject: Path) -> bool:
    """Return whether `pyproject` is the project file of rnnedge itself."""
    try:
        text = pyproject.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return re.search(r'^name\s*=\s*"rnnedge"\s*$', text, re.MULTILINE) is not None


def validate(data: Any, source: str, *, from_file: bool = False) -> DeviceProfile:
    """Check a parsed YAML document against the schema; return the profile.

    Args:
        from_file: `source` names a file that the user can edit or delete, which the
            message for a missing field names as the fix.
    """
    if not isinstance(data, dict):
        raise DeviceProfileError(f"{source}: a device profile must be a YAML mapping")
    for key, (kind, required) in _TOP_LEVEL.items():
        if key not in data:
            if required:
                fix = _missing_field_fix(key) if from_file else ""
                raise DeviceProfileError(f"{source}: missing required field {key!r}{fix}")
            continue
        if not isinstance(data[key], kind) or isinstance(data[key], bool):
            raise DeviceProfileError(
                f"{source}: field {key!r} must be a {_kind_name(kind)}, got "
                f"{type(data[key]).__name__}"
            )
    unknown = sorted(set(data) - set(_TOP_LEVEL))
    if unknown:
        raise DeviceProfileError(
            f"{source}: unknown field {unknown[0]!r}; allowed fields: {', '.join(_TOP_LEVEL)}"
        )
    version = data["schema_version"]
    if version > SCHEMA_VERSION:
        raise DeviceProfileError(
            f"{source}: schema_version {version} is newer than {SCHEMA_VERSION}, the newest "
            "this rnnedge reads; upgrade rnnedge (pip install -U rnnedge)"
        )
    if version not in READABLE_VERSIONS:
        raise DeviceProfileError(
            f"{source}: schema_version {version} is not supported; this rnnedge reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))}"
        )
    if version == 1 and "remote" in data:
        raise DeviceProfileError(
            f"{source}: field 'remote' needs schema_version 2; set schema_version: 2"
        )
    if not _NAME.match(data["name"]):
        raise DeviceProfileError(f"{source}: field 'name' {data['name']!r} is invalid: {NAME_RULE}")
    for key, allowed in (
        ("recognize", _RECOGNIZE),
        ("providers", _PROVIDERS),
        ("quantization", _QUANTIZATION),
    ):
        extra = sorted(set(data.get(key, {}) or {}) - allowed)
        if extra:
            raise DeviceProfileError(
                f"{source}: unknown field {f'{key}.{extra[0]}'!r}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
    preference = data["providers"].get("preference", [])
    if not isinstance(preference, list):
        raise DeviceProfileError(f"{source}: field 'providers.preference' must be a list")
    from rnnedge.runtime.providers import parse_provider

    for name in preference:
        try:
            parse_provider(str(name))
        except Exception as exc:
            raise DeviceProfileError(f"{source}: field 'providers.preference': {exc}") from exc
    measurements = data.get("measurements", []) or []
    _check_remote(data.get("remote"), source)
    for index, entry in enumerate(measurements):
        check_measurement(entry, f"{source}: measurements[{index}]")
    profile_data = {k: v for k, v in data.items() if k != "measurements"}
    # Migration on read: version 1 files become version 2 without further change.
    profile_data["schema_version"] = SCHEMA_VERSION
    return DeviceProfile(name=data["name"], data=profile_data, measurements=list(measurements))


def _missing_field_fix(key: str) -> str:
    """Return the fix for a device profile file that lacks the required field `key`."""
    if key == "schema_version":
        addition = f"add the line 'schema_version: {SCHEMA_VERSION}'"
    else:
        addition = f"add field {key!r}"
    return f"; fix the file ({addition}) or delete it to start a new profile"


def _check_remote(remote: dict[str, Any] | None, source: str) -> None:
    if remote is None:
        return
    for key, value in remote.items():
        if key not in _REMOTE:
            raise DeviceProfileError(
                f"{source}: unknown field {f'remote.{key}'!r}; "
                f"allowed: {', '.join(sorted(_REMOTE))}"
            )
        if not isinstance(value, _REMOTE[key]) or isinstance(value, bool):
            raise DeviceProfileError(
                f"{source}: field 'remote.{key}' must be of type {_kind_name(_REMOTE[key])}"
            )
    if "ssh" not in remote:
        raise DeviceProfileError(f"{source}: missing required field 'remote.ssh'")
    if remote["ssh"].startswith("-") or not remote["ssh"].strip():
        raise DeviceProfileError(
            f"{source}: field 'remote.ssh' {remote['ssh']!r} must be [user@]host and must not "
            "start with '-'"
        )


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {dict: "mapping", list: "list", str: "string", int: "integer"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


# libyaml's loader and dumper, where PyYAML was built with it, read and write the same
# documents as the pure-Python ones. On a 1.4 MB profile of 800 measurements they took
# 0.78 s against 2.64 s to load and 0.44 s against 1.19 s to dump (one run), and a sweep
# rewrites the profile after every point.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def load_yaml(text: str) -> Any:
    """Parse YAML into plain data only: like `yaml.safe_load`, no tag builds an object."""
    return yaml.load(text, Loader=_SAFE_LOADER)


def read_profile(path: Path) -> DeviceProfile:
    """Read and validate one device profile file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DeviceProfileError(f"{path}: cannot read device profile: {exc.strerror}") from exc
    try:
        data = load_yaml(text)
    except yaml.constructor.ConstructorError as exc:
        # The safe loader builds only plain data; a tag such as !!python/object would
        # construct (and run) Python code, so it is rejected, never executed.
        line = getattr(exc.problem_mark, "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        tag = re.search(r"tag '([^']*)'", exc.problem or "")
        raise DeviceProfileError(
            f"{path}: YAML tag {tag.group(1) if tag else '(unknown)'!r}{where} is not allowed; "
            "device profiles hold plain mappings, lists, strings and numbers, read with "
            "the safe loader, so remove the tag"
        ) from exc
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        where = f" at line {line + 1}" if line is not None else ""
        raise DeviceProfileError(
            f"{path}: invalid YAML{where}; fix the file or delete it to start a new profile"
        ) from exc
    if data is None:  # an empty file, or one of comments only
        raise DeviceProfileError(
            f"{path}: the device profile is empty; delete the file to start a new profile, or "
            "restore its content"
        )
    profile = validate(data, str(path), from_file=True)
    if profile.name != path.stem:
        raise DeviceProfileError(
            f"{path}: field 'name' is {profile.name!r} but the file is named {path.name!r}; "
            "make them agree"
        )
    profile.path = path
    return profile


def as_user_dir(user_dir: str | os.PathLike[str]) -> Path:
    """Return the folder of the user's device profiles as a `Path`, from a str or a path."""
    return Path(os.fspath(user_dir))


def catalog_names() -> list[str]:
    return sorted(p.stem for p in catalog_dir().glob("*.yaml"))


def known_names(user_dir: str | os.PathLike[str] = USER_DEVICES_DIR) -> list[str]:
    names = set(catalog_names())
    user_dir = as_user_dir(user_dir)
    if user_dir.is_dir():
        names.update(p.stem for p in user_dir.glob("*.yaml"))
    return sorted(names)


def load_device(
    name: str, user_dir: str | os.PathLike[str] = USER_DEVICES_DIR, *, hint: str | None = None
) -> DeviceProfile:
    """Load a device by name: `user_dir/<name>.yaml` first, then the catalog.

    Args:
        hint: the fix that ends the message for an unknown name, worded for the caller's
            option (for example "omit --device to profile this host under its own name").
            The default fix is to pass a known name or to add the profile file.
    """
    user_dir = as_user_dir(user_dir)
    if not _NAME.match(name):
        raise DeviceProfileError(f"invalid device name {name!r}: {NAME_RULE}")
    for directory in (user_dir, catalog_dir()):
        path = directory / f"{name}.yaml"
        if path.is_file():
            return read_profile(path)
    fix = hint or f"pass one of these names, or add {user_dir / (name + '.yaml')}"
    raise DeviceProfileError(
        f"unknown device {name!r}; known devices: {', '.join(known_names(user_dir))}; {fix}"
    )


def recognize_host(
    user_dir: str | os.PathLike[str] = USER_DEVICES_DIR, *, strict: bool = False
) -> DeviceProfile | None:
    """Find the catalog or user profile that describes this host, or None.

    A board match (device tree model, Jetson release file) wins over a generic one
    (architecture only). A user profile that cannot be read is skipped with a warning.
    With `strict`, a file that may describe this host (see `_unreadable_may_match`)
    raises its `DeviceProfileError` instead, because skipping it would record this host's
    measurements under another name.
    """
    user_dir = as_user_dir(user_dir)
    board = board_info()
    cpu = cpu_info()
    arch = platform.machine().lower()
    candidates: list[tuple[int, DeviceProfile]] = []
    seen: set[str] = set()
    for directory in (user_dir, catalog_dir()):
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.yaml")):
            if path.stem in seen:
                continue
            seen.add(path.stem)
            try:
                profile = read_profile(path)
            except DeviceProfileError as exc:
                if strict and _unreadable_may_match(path, board, cpu, arch):
                    raise
                logger.warning("skipping device profile: %s", exc)
                continue
            score = _match_score(profile.data.get("recognize", {}), board, cpu, arch)
            if score > 0:
                candidates.append((score, profile))
    if not candidates:
        return None
    candidates.sort(key=lambda item: -item[0])
    return candidates[0][1]


def _unreadable_may_match(
    path: Path, board: dict[str, Any], cpu: dict[str, Any], arch: str
) -> bool:
    """Return whether a profile file that failed to read or validate may describe this host.

    It may when it replaces a catalog entry that matches this host, when it has the name
    rnnedge gives an unrecognized host, or when its `recognize` rules still parse and
    match. A file that does not parse at all and has none of those names cannot be judged.
    """
    if path.stem == host_device_name():
        return True
    shipped = catalog_dir() / path.name
    if shipped.is_file() and path.resolve() != shipped.resolve():
        with contextlib.suppress(DeviceProfileError):
            rule = read_profile(shipped).data.get("recognize", {})
            if _match_score(rule, board, cpu, arch) > 0:
                return True
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
        rule = data.get("recognize") if isinstance(data, dict) else None
        return isinstance(rule, dict) and _match_score(rule, board, cpu, arch) > 0
    except (OSError, ValueError, yaml.YAMLError, TypeError, AttributeError):
        return False


def host_matches(profile: DeviceProfile) -> bool:
    """Return whether this host satisfies the `recognize` rules of `profile`."""
    rule = profile.data.get("recognize", {}) or {}
    return _match_score(rule, board_info(), cpu_info(), platform.machine().lower()) > 0


def describe_host() -> str:
    """This host in a few words for messages: board model or architecture, and CPU model."""
    board = board_info().get("device_tree_model")
    cpu = cpu_info()
    return f"{board or cpu['arch']}, {cpu['model']}"


def describe_recognize(profile: DeviceProfile) -> str:
    """Describe the `recognize` rules of `profile` in words, for messages."""
    rule = profile.data.get("recognize", {}) or {}
    parts = []
    if rule.get("arch"):
        parts.append("architecture " + " or ".join(map(str, rule["arch"])))
    if rule.get("device_tree_model"):
        parts.append("device tree model " + " or ".join(map(repr, rule["device_tree_model"])))
    if rule.get("nv_tegra_release"):
        parts.append("a Jetson L4T release in /etc/nv_tegra_release")
    if rule.get("cpu_model"):
        parts.append("CPU model " + " or ".join(map(repr, rule["cpu_model"])))
    return " and ".join(parts) or "no rules"


def _match_score(
    rule: dict[str, Any], board: dict[str, Any], cpu: dict[str, Any], arch: str
) -> int:
    arches = [a.lower() for a in rule.get("arch", [])]
    if arches and arch not in arches:
        return 0
    if rule.get("nv_tegra_release") and not board.get("nv_tegra_release"):
        return 0
    score = 0
    models = rule.get("device_tree_model", [])
    if models:
        tree = board.get("device_tree_model") or ""
        if not any(m.lower() in tree.lower() for m in models):
            return 0
        score += 10
    cpu_models = rule.get("cpu_model", [])
    if cpu_models:
        if not any(m.lower() in str(cpu.get("model", "")).lower() for m in cpu_models):
            return 0
        score += 5
    if rule.get("generic"):
        return 1
    return score


def host_device_name() -> str:
    """Make a device name from this host's CPU model, for hosts no profile recognizes."""
    model = str(cpu_info().get("model", "unknown")).lower()
    slug = re.sub(r"[^a-z0-9]+", "-", model).strip("-")[:40] or "unknown"
    return f"host-{platform.machine().lower()}-{slug}"[:64]


def new_profile_for_host(name: str) -> DeviceProfile:
    """Build a fresh profile for an unrecognized host from its fingerprint."""
    cpu = cpu_info()
    data = {
        "schema_version": SCHEMA_VERSION,
        "name": name,
        "description": f"{cpu['model']} ({cpu['arch']}), created from this host's fingerprint",
        "hardware": {
            "cpu": cpu["model"],
            "cores": cpu["physical_cores"],
            "source": "measured on the host by rnnedge",
        },
        "recognize": {"arch": [cpu["arch"]], "cpu_model": [cpu["model"]]},
        "providers": {"preference": ["cpu"], "options": {}},
    }
    return validate(data, f"new profile {name!r}")


def default_device(user_dir: str | os.PathLike[str] = USER_DEVICES_DIR) -> DeviceProfile:
    """The profile for this host: a recognized one, or a new one from its fingerprint.

    Raises:
        DeviceProfileError: a user profile that may describe this host cannot be read;
            storing under a new name would hide that file's measurements.
    """
    found = recognize_host(user_dir, strict=True)
    if found is not None:
        logger.info("recognized this host as device %r", found.name)
        return found
    name = host_device_name()
    logger.info("no device profile matches this host; using %r", name)
    return new_profile_for_host(name)


def user_profile_path(name: str, user_dir: str | os.PathLike[str] = USER_DEVICES_DIR) -> Path:
    return as_user_dir(user_dir) / f"{name}.yaml"
