#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: the runner_agent authors. Apache-2.0.
"""Write a key/value packet to a file in JSON, YAML, INI or env format, in one module call.

The pure functions (render_*, parse_*, flatten, compute_drift, ...) carry the logic and hold no
Ansible state, so the unit tests import this file and call them directly. Standard library only:
this file runs on the target host. YAML is written by our own emitter (deterministic whatever is
installed) and read back with PyYAML when the host has it, else with a parser for the subset the
emitter writes.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: kv_file
short_description: Write, remove or back up a key/value file (JSON, YAML, INI, env)
description:
  - Renders C(values) deterministically (sorted keys) in C(format) and writes it atomically
    when the content or the mode differs; creates missing parent folders.
  - In check mode nothing is written; C(drift) lists the keys that differ, never their values.
options:
  path: {type: path, required: true, description: The file.}
  format: {type: str, default: json, choices: [json, yaml, ini, env], description: File format.}
  values: {type: dict, description: The key/value packet; required when operation=write.}
  mode: {type: raw, description: "Octal mode such as '0640' (a string); unchanged when omitted."}
  operation:
    type: str
    default: write
    choices: [write, remove, backup]
    description: write the file, remove it, or copy it to a timestamped backup.
  backup_dir: {type: path, description: Folder for backups (default the file's folder).}
"""

RETURN = r"""
path: {type: str, description: The file.}
format: {type: str, description: Its format.}
sha256: {type: str, description: SHA-256 of the content written (or that would be written).}
keys: {type: int, description: Number of keys (leaves; nesting flattened with /).}
drift: {type: list, description: "[{key, change: added|changed|removed}], keys only."}
backup_path: {type: str, description: The backup written (operation=backup); empty if none.}
"""

import datetime
import hashlib
import json
import math
import os
import re
import shutil
import stat
import tempfile

from ansible.module_utils.basic import AnsibleModule

FORMATS = ("json", "yaml", "ini", "env")
SEP = "/"

ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
ENV_SAFE = re.compile(r"[A-Za-z0-9_./:@%+,-]+\Z")
YAML_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./@+-]*(?: [A-Za-z0-9_./@+-]+)*\Z")
YAML_RESERVED = frozenset(
    ["y", "n", "yes", "no", "true", "false", "on", "off", "null", "nan", "inf"]
)
YAML_INT = re.compile(r"[-+]?(?:0|[1-9][0-9_]*)\Z")
YAML_FLOAT = re.compile(r"[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?\Z")


class KVError(ValueError):
    """Values that cannot be written in the requested format."""


# ---------------------------------------------------------------- values


def normalize(value):
    """A copy with every mapping key a string and every tuple a list (JSON's data model)."""
    if isinstance(value, dict):
        return {str(k): normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    return value


def flatten(data, sep=SEP, _prefix=""):
    """{a: {b: 1}} -> {"a/b": 1}. Lists and empty mappings are leaves."""
    out = {}
    for key, value in data.items():
        name = _prefix + str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, sep, name + sep))
        else:
            out[name] = value
    return out


def scalar_text(value):
    """How a scalar is written in INI and env files: strings as they are, others JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def canonical(value, fmt):
    """A comparable form of a leaf value as the format can hold it."""
    if fmt in ("ini", "env"):
        text = scalar_text(value)
        return text.strip() if fmt == "ini" else text
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def compute_drift(desired, actual, fmt="json", removed=True):
    """Keys that differ between two flat mappings: [{key, change}], sorted by key.

    added: in desired only; removed: in actual only (when ``removed``); changed: both, differing.
    Values never appear in the result.
    """
    drift = []
    for key in sorted(set(desired) | set(actual)):
        if key not in actual:
            drift.append({"key": key, "change": "added"})
        elif key not in desired:
            if removed:
                drift.append({"key": key, "change": "removed"})
        elif canonical(desired[key], fmt) != canonical(actual[key], fmt):
            drift.append({"key": key, "change": "changed"})
    return drift


# ---------------------------------------------------------------- render


def render(values, fmt):
    """The file content for ``values`` in ``fmt`` (a str ending with a newline)."""
    if fmt not in FORMATS:
        raise KVError("unknown format %r (known: %s)" % (fmt, ", ".join(FORMATS)))
    if not isinstance(values, dict):
        raise KVError("values must be a mapping, got %s" % type(values).__name__)
    return {"json": render_json, "yaml": render_yaml, "ini": render_ini, "env": render_env}[fmt](
        normalize(values)
    )


def render_json(values):
    return json.dumps(values, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def yaml_scalar(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        if "e" in text:  # YAML 1.1 floats need a dot and a signed exponent
            mantissa, exponent = text.split("e")
            if "." not in mantissa:
                mantissa += ".0"
            if exponent[0] not in "+-":
                exponent = "+" + exponent
            text = mantissa + "e" + exponent
        return text
    if isinstance(value, str):
        if YAML_PLAIN.match(value) and value.lower() not in YAML_RESERVED:
            return value
        return json.dumps(value, ensure_ascii=False)
    raise KVError("cannot write a %s in YAML" % type(value).__name__)


def _yaml_lines(value, indent):
    """Block-style lines for a non-empty mapping or list, each indented by ``indent``."""
    pad = " " * indent
    lines = []
    if isinstance(value, dict):
        for key in sorted(value):
            item = value[key]
            head = pad + yaml_scalar(str(key)) + ":"
            if isinstance(item, (dict, list)) and item:
                lines.append(head)
                lines.extend(_yaml_lines(item, indent + 2))
            else:
                lines.append(head + " " + _yaml_leaf(item))
    else:
        for item in value:
            if isinstance(item, (dict, list)) and item:
                sub = _yaml_lines(item, indent + 2)
                sub[0] = pad + "- " + sub[0][indent + 2:]
                lines.extend(sub)
            else:
                lines.append(pad + "- " + _yaml_leaf(item))
    return lines


def _yaml_leaf(value):
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return yaml_scalar(value)


def render_yaml(values):
    if not values:
        return "{}\n"
    return "\n".join(_yaml_lines(values, 0)) + "\n"


def _ini_value(where, value):
    if isinstance(value, (dict, list)):
        raise KVError(
            "ini: %s is nested (%s); an INI file holds scalars at the top, and sections "
            "mapping keys to scalars" % (where, type(value).__name__)
        )
    text = scalar_text(value)
    if "\n" in text or "\r" in text:
        raise KVError("ini: the value of %s holds a line break, which INI cannot hold" % where)
    return text


def _ini_key(where, key):
    if not key.strip() or key != key.strip():
        raise KVError("ini: key %r (%s) is empty or has surrounding spaces" % (key, where))
    if "=" in key or "\n" in key or "\r" in key or key[0] in "[;#":
        raise KVError("ini: key %r (%s) cannot hold '=' or a line break, nor start with [ ; #"
                      % (key, where))


def render_ini(values):
    top = [k for k in sorted(values) if not isinstance(values[k], dict)]
    sections = [k for k in sorted(values) if isinstance(values[k], dict)]
    lines = []
    for key in top:
        _ini_key(key, key)
        lines.append("%s = %s" % (key, _ini_value(repr(key), values[key])))
    for section in sections:
        if not section.strip() or "]" in section or "\n" in section or "\r" in section:
            raise KVError("ini: section name %r cannot be empty or hold ']' or a line break"
                          % section)
        if lines:
            lines.append("")
        lines.append("[%s]" % section)
        for key in sorted(values[section]):
            where = "%s/%s" % (section, key)
            _ini_key(where, key)
            lines.append("%s = %s" % (key, _ini_value(repr(where), values[section][key])))
    return "\n".join(lines) + "\n" if lines else ""


def env_quote(text):
    """A value as written after KEY=: bare when safe, else double-quoted with escapes."""
    if ENV_SAFE.match(text):
        return text
    out = []
    for ch in text:
        if ch in '\\"$`':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def render_env(values):
    lines = []
    for key in sorted(values):
        if not ENV_KEY.match(key):
            raise KVError("env: key %r is not a variable name ([A-Za-z_][A-Za-z0-9_]*)" % key)
        value = values[key]
        if isinstance(value, (dict, list)):
            raise KVError(
                "env: the value of %r is nested (%s); an env file holds flat KEY=value pairs"
                % (key, type(value).__name__)
            )
        lines.append("%s=%s" % (key, env_quote(scalar_text(value))))
    return "\n".join(lines) + "\n" if lines else ""


# ---------------------------------------------------------------- parse


def parse(text, fmt):
    """The mapping a file of format ``fmt`` holds. Raises ValueError when it cannot be read."""
    if fmt == "json":
        data = json.loads(text) if text.strip() else {}
    elif fmt == "yaml":
        data = parse_yaml(text)
    elif fmt == "ini":
        data = parse_ini(text)
    elif fmt == "env":
        data = parse_env(text)
    else:
        raise ValueError("unknown format %r" % fmt)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError("the file does not hold a mapping")
    return normalize(data)


def parse_ini(text):
    data = {}
    section = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in ";#":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise ValueError("line %d: unclosed section header" % number)
            section = line[1:-1].strip()
            data.setdefault(section, {})
            continue
        if "=" not in line:
            raise ValueError("line %d: expected key = value" % number)
        key, value = line.split("=", 1)
        target = data if section is None else data[section]
        target[key.strip()] = value.strip()
    return data


_ENV_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t"}


def parse_env(text):
    data = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        if "=" not in line:
            raise ValueError("line %d: expected KEY=value" % number)
        key, rest = line.split("=", 1)
        key = key.strip()
        rest = rest.strip()
        if rest.startswith('"'):
            out, i, closed = [], 1, False
            while i < len(rest):
                ch = rest[i]
                if ch == "\\" and i + 1 < len(rest):
                    out.append(_ENV_UNESCAPE.get(rest[i + 1], rest[i + 1]))
                    i += 2
                    continue
                if ch == '"':
                    closed = True
                    break
                out.append(ch)
                i += 1
            if not closed:
                raise ValueError("line %d: unclosed double quote" % number)
            value = "".join(out)
        elif rest.startswith("'"):
            end = rest.find("'", 1)
            if end < 0:
                raise ValueError("line %d: unclosed single quote" % number)
            value = rest[1:end]
        else:
            value = re.split(r"\s+#", rest, maxsplit=1)[0].strip()
        data[key] = value
    return data


def parse_yaml(text):
    try:
        import yaml  # PyYAML, when the host has it
    except ImportError:
        return parse_yaml_subset(text)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ValueError(str(exc)) from None


def yaml_plain_scalar(text):
    """A YAML scalar as written by yaml_scalar (or a plain, quoted or flow value)."""
    text = text.strip()
    if not text:
        return None
    if text[0] == '"':
        return json.loads(text)
    if text[0] == "'":
        if len(text) < 2 or text[-1] != "'":
            raise ValueError("unclosed single-quoted scalar %r" % text)
        return text[1:-1].replace("''", "'")
    if text[0] in "[{":
        return json.loads(text)
    if " #" in text:
        text = text.split(" #", 1)[0].rstrip()
    low = text.lower()
    if low in ("null", "~"):
        return None
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in (".inf", "+.inf"):
        return float("inf")
    if low == "-.inf":
        return float("-inf")
    if low == ".nan":
        return float("nan")
    if YAML_INT.match(text):
        return int(text.replace("_", ""))
    if YAML_FLOAT.match(text) and text not in (".", "-.", "+."):
        return float(text.replace("_", ""))
    return text


def _yaml_split_key(text):
    """(key, rest) when ``text`` is a mapping entry 'key: rest', else None."""
    if text.startswith('"'):
        decoder = json.JSONDecoder()
        try:
            key, end = decoder.raw_decode(text)
        except ValueError:
            return None
        rest = text[end:]
        if rest == ":" or rest.startswith(": "):
            return key, rest[1:].strip()
        return None
    if text.startswith("'"):
        match = re.match(r"'((?:[^']|'')*)'(:(?:\s+.*)?)\Z", text)
        if not match:
            return None
        return match.group(1).replace("''", "'"), match.group(2)[1:].strip()
    match = re.match(r"([^\s\"'#\[\]{},][^:#]*?):(?:\s+(.*))?\Z", text)
    if not match or text.startswith("- ") or text == "-":
        return None
    return match.group(1).strip(), (match.group(2) or "").strip()


def parse_yaml_subset(text):
    """Parse the block-style YAML subset that render_yaml writes, without PyYAML."""
    lines = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#") or stripped in ("---", "..."):
            continue
        if "\t" in raw[: len(raw) - len(raw.lstrip())]:
            raise ValueError("tabs in indentation")
        lines.append([len(raw) - len(raw.lstrip(" ")), raw.strip()])
    if not lines:
        return None
    if len(lines) == 1 and _yaml_split_key(lines[0][1]) is None and lines[0][1][0] != "-":
        return yaml_plain_scalar(lines[0][1])
    value, pos = _yaml_block(lines, 0, lines[0][0])
    if pos != len(lines):
        raise ValueError("unexpected indentation near %r" % lines[pos][1])
    return value


def _yaml_block(lines, pos, indent):
    text = lines[pos][1]
    if text == "-" or text.startswith("- "):
        return _yaml_list(lines, pos, indent)
    return _yaml_map(lines, pos, indent)


def _yaml_list(lines, pos, indent):
    out = []
    while pos < len(lines) and lines[pos][0] == indent:
        text = lines[pos][1]
        if not (text == "-" or text.startswith("- ")):
            break
        rest = text[1:].strip()
        if not rest:
            pos += 1
            if pos < len(lines) and lines[pos][0] > indent:
                value, pos = _yaml_block(lines, pos, lines[pos][0])
            else:
                value = None
            out.append(value)
            continue
        if rest.startswith("- ") or rest == "-" or _yaml_split_key(rest) is not None:
            # the item is a block whose first line starts after "- "
            lines[pos] = [indent + len(text) - len(text[1:].lstrip()), rest]
            value, pos = _yaml_block(lines, pos, lines[pos][0])
            out.append(value)
            continue
        out.append(yaml_plain_scalar(rest))
        pos += 1
    return out, pos


def _yaml_map(lines, pos, indent):
    out = {}
    while pos < len(lines) and lines[pos][0] == indent:
        entry = _yaml_split_key(lines[pos][1])
        if entry is None:
            break
        key, rest = entry
        pos += 1
        if rest:
            out[key] = yaml_plain_scalar(rest)
            continue
        nxt = lines[pos] if pos < len(lines) else None
        if nxt is not None and (
            nxt[0] > indent or (nxt[0] == indent and (nxt[1] == "-" or nxt[1].startswith("- ")))
        ):
            out[key], pos = _yaml_block(lines, pos, nxt[0])
        else:
            out[key] = None
    return out, pos


# ---------------------------------------------------------------- files


def parse_mode(mode):
    """'0640' / '640' (octal text) or an int -> int; None stays None."""
    if mode is None or mode == "":
        return None
    if isinstance(mode, bool):
        raise KVError("mode must be octal text such as '0640'")
    if isinstance(mode, int):
        if not 0 <= mode <= 0o7777:
            raise KVError("mode %r is out of range" % mode)
        return mode
    text = str(mode).strip()
    if not re.match(r"0?[0-7]{3,4}\Z", text) and not re.match(r"0o[0-7]{3,4}\Z", text):
        raise KVError("mode must be octal text such as '0640', got %r" % text)
    return int(text[2:] if text.startswith("0o") else text, 8)


def backup_name(path, backup_dir=None, now=None):
    """<path>.<UTC timestamp>.bak, or the same name inside backup_dir; never an existing file."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    folder = backup_dir or os.path.dirname(path) or "."
    base = os.path.join(folder, "%s.%s" % (os.path.basename(path), stamp))
    candidate, n = base + ".bak", 1
    while os.path.lexists(candidate):
        candidate, n = "%s-%d.bak" % (base, n), n + 1
    return candidate


def read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _makedirs(folder):
    if folder:
        os.makedirs(folder, exist_ok=True)


def write_file(module, path, data, mode):
    """Atomically replace ``path`` with ``data``; a new file gets ``mode`` before it has content."""
    folder = os.path.dirname(path) or "."
    _makedirs(folder)
    if mode is not None and not os.path.lexists(path):
        # Create the (empty) destination with its final mode first: atomic_move then copies
        # that mode onto the new content, so the content is never readable with a wider mode.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # created meanwhile (another host sharing this file system)
            pass
        else:
            os.close(fd)
            os.chmod(path, mode)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        module.atomic_move(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    if mode is not None and stat.S_IMODE(os.stat(path).st_mode) != mode:
        os.chmod(path, mode)


# ---------------------------------------------------------------- operations


def op_write(module, path, fmt, values, mode):
    try:
        content = render(values, fmt)
        mode = parse_mode(mode)
    except KVError as exc:
        module.fail_json(msg=str(exc), path=path)
    data = content.encode("utf-8")
    desired = flatten(normalize(values))
    if os.path.isdir(path):
        module.fail_json(msg="%s is a folder" % path, path=path)
    old = read_bytes(path)
    actual = {}
    if old is not None:
        try:
            actual = flatten(parse(old.decode("utf-8"), fmt))
        except (ValueError, UnicodeDecodeError) as exc:
            if module.check_mode:
                module.warn("%s cannot be read as %s (%s): every key counts as added"
                            % (path, fmt, exc))
    old_mode = stat.S_IMODE(os.stat(path).st_mode) if old is not None else None
    content_changed = old != data
    mode_changed = mode is not None and old_mode != mode
    changed = content_changed or mode_changed
    if changed and not module.check_mode:
        try:
            write_file(module, path, data, mode)
        except OSError as exc:  # said as "PATH: reason", as every refused operation
            module.fail_json(msg="%s: %s" % (path, exc.strerror or exc), path=path)
        except Exception as exc:  # atomic_move raises plain Exception
            module.fail_json(msg="cannot write %s: %s" % (path, exc), path=path)
    result = dict(
        changed=changed,
        path=path,
        format=fmt,
        sha256=hashlib.sha256(data).hexdigest(),
        keys=len(desired),
        drift=compute_drift(desired, actual, fmt),
    )
    if module._diff:
        diff = [dict(
            before_header=path,
            after_header=path,
            before=old.decode("utf-8", "replace") if old is not None else "",
            after=content,
        )]
        if mode_changed:
            diff.append(dict(
                before={"mode": "%04o" % old_mode if old_mode is not None else None},
                after={"mode": "%04o" % mode},
            ))
        result["diff"] = diff
    return result


def op_remove(module, path):
    if os.path.isdir(path):
        module.fail_json(msg="%s is a folder" % path, path=path)
    exists = os.path.lexists(path)
    if exists and not module.check_mode:
        os.unlink(path)
    result = dict(changed=exists, path=path, removed=exists)
    if module._diff:
        result["diff"] = dict(
            before={"path": path, "state": "file" if exists else "absent"},
            after={"path": path, "state": "absent"},
        )
    return result


def op_backup(module, path, backup_dir):
    if not os.path.isfile(path):
        module.warn("%s does not exist: nothing to back up" % path)
        return dict(changed=False, path=path, backup_path="")
    target = backup_name(path, backup_dir)
    if not module.check_mode:
        _makedirs(os.path.dirname(target))
        shutil.copy2(path, target)
    return dict(changed=True, path=path, backup_path=target)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            format=dict(type="str", default="json", choices=list(FORMATS)),
            values=dict(type="dict"),
            mode=dict(type="raw"),
            operation=dict(type="str", default="write", choices=["write", "remove", "backup"]),
            backup_dir=dict(type="path"),
        ),
        required_if=[("operation", "write", ["values"])],
        supports_check_mode=True,
    )
    p = module.params
    path = os.path.abspath(p["path"])
    try:
        if p["operation"] == "write":
            result = op_write(module, path, p["format"], p["values"], p["mode"])
        elif p["operation"] == "remove":
            result = op_remove(module, path)
        else:
            result = op_backup(module, path, p["backup_dir"])
    except OSError as exc:  # permission denied, not a directory, disk full...
        where = exc.filename or path
        module.fail_json(msg="%s: %s" % (where, exc.strerror or exc), path=path)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
