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
---
module: kv_file
short_description: Write, remove or back up a key/value file (JSON, YAML, INI, env)
description:
  - Renders O(values) deterministically (sorted keys) in O(format) and writes it when the
    content or the file's attributes differ; creates missing parent folders.
  - The file is written through a temporary file created exclusively in its folder with a
    random name and permissions 0600, flushed to disk, given its attributes, then renamed over
    O(path). A new file without O(mode) stays 0600, because values may hold secrets.
  - A O(path) that is a symbolic link is refused, whatever the operation; nothing is written.
  - So is a O(path) (or a O(backup_dir)) with a symbolic link on the way that someone other
    than root and the user running the module could have put there, that is a link in a
    folder others can write (not sticky), or a link or folder owned by another user. Folders
    are opened one at a time from C(/) without following links (a trusted link's target is
    walked the same way), and the file is read, written, renamed and removed relative to its
    folder's descriptor, so a folder replaced by a link meanwhile cannot redirect a write.
  - O(path) is taken as it is written (no C($VAR) or C(~) expansion) and must be absolute.
  - Values a format cannot hold so that they read back the same are refused before anything
    is written (nested values in ini and env, surrounding spaces in ini, control characters in
    ini and env, NaN or infinity in json, text that is not valid Unicode in any format).
  - In check mode nothing is written; RV(drift) lists the keys that differ, never their values.
version_added: "1.0.0"
author:
  - runner_agent authors (@runner-agent)
options:
  path:
    type: str
    required: true
    description: The file, as an absolute path; never expanded.
  format:
    type: str
    default: json
    choices: [json, yaml, ini, env]
    description: The file format.
  values:
    type: dict
    description: The key/value packet; required when O(operation=write).
  operation:
    type: str
    default: write
    choices: [write, remove, backup]
    description: Write the file, remove it, or copy it to a timestamped backup.
  backup_dir:
    type: str
    description: Folder for backups, as an absolute path (default the file's folder); never expanded.
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.files
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
"""

EXAMPLES = r"""
- name: Write the web service's settings as JSON, readable by its group
  runner_agent.agents.kv_file:
    path: /etc/acme/web.json
    values:
      port: 8080
      db: {host: db.internal, pool: 10}
    owner: root
    group: acme
    mode: "0640"

- name: Report the keys that differ from an env file, writing nothing
  runner_agent.agents.kv_file:
    path: /etc/acme/web.env
    format: env
    values: {LOG_LEVEL: info}
  check_mode: true
  register: web_env

- name: Copy the file aside before a risky change
  runner_agent.agents.kv_file:
    path: /etc/acme/web.json
    operation: backup
    backup_dir: /var/backups/acme
"""

RETURN = r"""
path:
  description: The file.
  returned: always
  type: str
  sample: /etc/acme/web.json
format:
  description: Its format.
  returned: O(operation=write)
  type: str
  sample: json
sha256:
  description: SHA-256 of the content written (or that would be written).
  returned: O(operation=write)
  type: str
  sample: 6f1ed002ab5595859014ebf0951522d9a0a1a8e1b8f2e2b2f1e1d3c4b5a69788
keys:
  description: Number of keys (leaves; nesting flattened with /).
  returned: O(operation=write)
  type: int
  sample: 3
drift:
  description: The keys that differ from the file, and how; never their values.
  returned: O(operation=write)
  type: list
  elements: dict
  sample: [{"key": "db/pool", "change": "changed"}]
changes:
  description:
    - The keys written or removed (or that would be, in check mode), each with its value
      before (absent for an added key) and after (absent for a removed one), as stored.
    - The runtime masks the values of secret keys (docs/agents.md, the check contract).
  returned: O(operation=write) or O(operation=remove)
  type: list
  elements: dict
  sample: [{"key": "db/pool", "change": "changed", "before": "5", "after": "10"}]
removed:
  description: Whether the file was there to remove.
  returned: O(operation=remove)
  type: bool
  sample: true
backup_path:
  description: The backup written; empty if there was no file.
  returned: O(operation=backup)
  type: str
  sample: /var/backups/acme/web.json.20260101T000000Z.bak
"""

import datetime
import errno
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import stat

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.runner_agent.agents.plugins.module_utils.kv import (
    SEP,
    drift,
    flatten,
    key_changes,
    normalize,
)

FORMATS = ("json", "yaml", "ini", "env")

ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
ENV_SAFE = re.compile(r"[A-Za-z0-9_./:@%+,-]+\Z")
YAML_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./@+-]*(?: [A-Za-z0-9_./@+-]+)*\Z")
YAML_RESERVED = frozenset(
    ["y", "n", "yes", "no", "true", "false", "on", "off", "null", "nan", "inf"]
)
YAML_INT = re.compile(r"[-+]?(?:0|[1-9][0-9_]*)\Z")
YAML_FLOAT = re.compile(r"[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?\Z")
# What YAML lets stand unescaped in a document (YAML 1.2 section 5.1, "c-printable"), less the
# line breaks PyYAML also knows (NEL, LS, PS) and the byte order mark: all written as \uXXXX,
# an escape that YAML's double-quoted style and JSON (our subset reader) both understand.
YAML_UNSAFE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
# Characters that end a line for str.splitlines() besides \n and \r, and other control
# characters: an ini or env line cannot hold them and read back the same.
LINE_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
SURROGATE = re.compile("[\ud800-\udfff]")


class KVError(ValueError):
    """Values that cannot be written in the requested format."""


# ---------------------------------------------------------------- values


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
    """Keys that differ between two flat mappings, compared as the format holds values."""
    return drift(
        desired, actual, lambda a, b: canonical(a, fmt) == canonical(b, fmt), removed
    )


def check_text(values, fmt, _where=""):
    """Refuse text no file can hold: lone surrogates are not Unicode, so not UTF-8."""
    items = values.items() if isinstance(values, dict) else enumerate(values)
    for key, value in items:
        where = _where + SEP + str(key) if _where else str(key)
        if isinstance(key, str) and SURROGATE.search(key):
            raise KVError("%s: key %r is not valid Unicode text" % (fmt, where))
        if isinstance(value, str) and SURROGATE.search(value):
            raise KVError("%s: the value of %r is not valid Unicode text" % (fmt, where))
        if isinstance(value, (dict, list)):
            check_text(value, fmt, where)


# ---------------------------------------------------------------- render


def render(values, fmt):
    """The file content for ``values`` in ``fmt`` (a str ending with a newline)."""
    if fmt not in FORMATS:
        raise KVError("unknown format %r (known: %s)" % (fmt, ", ".join(FORMATS)))
    if not isinstance(values, dict):
        raise KVError("values must be a mapping, got %s" % type(values).__name__)
    values = normalize(values)
    check_text(values, fmt)
    return {"json": render_json, "yaml": render_yaml, "ini": render_ini, "env": render_env}[fmt](
        values
    )


def render_json(values):
    try:
        text = json.dumps(values, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except ValueError:  # JSON has no NaN or infinity: readers other than Python's refuse them
        raise KVError("json: NaN and infinity cannot be written in JSON") from None
    return text + "\n"


def yaml_quote(text):
    """A double-quoted YAML scalar that YAML readers and JSON both read back as ``text``."""
    out = json.dumps(text, ensure_ascii=False)
    return YAML_UNSAFE.sub(lambda m: "\\u%04x" % ord(m.group(0)), out)


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
        return yaml_quote(value)
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
    if "\n" in text or "\r" in text or LINE_UNSAFE.search(text):
        raise KVError("ini: the value of %s holds a line break or a control character, which "
                      "INI cannot hold" % where)
    if text != text.strip():
        raise KVError("ini: the value of %s has surrounding spaces, which INI readers drop"
                      % where)
    return text


def _ini_key(where, key):
    if ("=" in key or "\n" in key or "\r" in key or LINE_UNSAFE.search(key)
            or key[:1] in ("[", ";", "#")):
        raise KVError("ini: key %r (%s) cannot hold '=', a line break or a control character, "
                      "nor start with [ ; #" % (key, where))
    if not key.strip() or key != key.strip():
        raise KVError("ini: key %r (%s) is empty or has surrounding spaces" % (key, where))


def render_ini(values):
    top = [k for k in sorted(values) if not isinstance(values[k], dict)]
    sections = [k for k in sorted(values) if isinstance(values[k], dict)]
    lines = []
    for key in top:
        _ini_key(key, key)
        lines.append("%s = %s" % (key, _ini_value(repr(key), values[key])))
    for section in sections:
        if (not section.strip() or section != section.strip() or "]" in section
                or "\n" in section or "\r" in section or LINE_UNSAFE.search(section)):
            raise KVError("ini: section name %r cannot be empty, have surrounding spaces or "
                          "hold ']', a line break or a control character" % section)
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
        text = scalar_text(value)
        if LINE_UNSAFE.search(text):
            raise KVError("env: the value of %r holds a control character other than a tab "
                          "or a line break, which env files cannot hold" % key)
        lines.append("%s=%s" % (key, env_quote(text)))
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


class UnsafeFolder(Exception):
    """A folder on the way to a path is a link someone else could have put there, or not a
    folder."""


class NotAFolder(UnsafeFolder):
    """Something other than a folder (a file) is where a folder on the way should be."""


class _Link(Exception):
    """The name is a symbolic link (the walk decides whether to follow it)."""

    def __init__(self, info):
        Exception.__init__(self)
        self.info = info


DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LINKS = 40  # the kernel's MAXSYMLINKS: more links than this on one path is a loop


def _open_child(fd, name, walked):
    """A descriptor of the folder ``name`` in the folder ``fd``; never through a link (_Link)."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=fd)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
    if stat.S_ISLNK(info.st_mode):
        raise _Link(info)
    raise NotAFolder("%s is not a folder" % walked)


def trusted_link(link, folder, uid=None):
    """Whether nobody but root and the user running the module could have put the link (stat
    ``link``) in the folder (stat ``folder``) or replaced something by it: both belong to one
    of them, and the folder is writable by no one else, or sticky (others cannot rename or
    remove what is not theirs in it). The rule of OpenSSH's StrictModes and of Linux's
    fs.protected_symlinks, applied to every folder on the way."""
    mine = (0, os.geteuid() if uid is None else uid)
    if link.st_uid not in mine or folder.st_uid not in mine:
        return False
    shared = folder.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    return not shared or bool(folder.st_mode & stat.S_ISVTX)


def open_folder(folder, create=False):
    """A descriptor of the absolute, normalised ``folder``, opened from / one folder at a time
    with O_NOFOLLOW. A symbolic link on the way is followed only when trusted_link (its
    target is walked the same way); any other is refused (UnsafeFolder names it), so a folder
    someone else can write cannot send the file elsewhere. Missing folders are made when
    ``create`` (mode 0777 less the umask, as os.makedirs); otherwise a missing folder, or a
    file where one should be, gives None (nothing there)."""
    fd = os.open("/", DIR_FLAGS)
    walked = "/"
    parts = [part for part in folder.split("/") if part]
    links = 0
    try:
        while parts:
            name = parts.pop(0)
            if name in (".", ".."):  # only in a link's target
                child = os.open(name, DIR_FLAGS, dir_fd=fd)
                walked = os.path.dirname(walked) if name == ".." else walked
                os.close(fd)
                fd = child
                continue
            here = os.path.join(walked, name)
            try:
                try:
                    child = _open_child(fd, name, here)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    try:
                        os.mkdir(name, 0o777, dir_fd=fd)
                    except FileExistsError:  # made meanwhile: opened and checked below
                        pass
                    child = _open_child(fd, name, here)
            except NotAFolder:
                if create:
                    raise
                os.close(fd)
                return None
            except _Link as link:
                if not trusted_link(link.info, os.fstat(fd)):
                    raise UnsafeFolder(
                        "%s is a symbolic link in a folder others can write (or theirs): "
                        "kv_file does not write through it; point the path at the real "
                        "folder" % here)
                links += 1
                if links > MAX_LINKS:
                    raise UnsafeFolder("%s: too many symbolic links on the way" % here)
                target = os.readlink(name, dir_fd=fd)
                if target.startswith("/"):
                    os.close(fd)
                    fd = os.open("/", DIR_FLAGS)
                    walked = "/"
                parts = [part for part in target.split("/") if part] + parts
                continue
            os.close(fd)
            fd = child
            walked = here
    except BaseException:
        os.close(fd)
        raise
    return fd


class Place(object):
    """A file's folder, opened without links (see open_folder), and the file's name in it:
    every read, write, rename and removal is relative to the folder's descriptor."""

    def __init__(self, path, create=False):
        self.path = path
        self.name = os.path.basename(path)
        self.fd = open_folder(os.path.dirname(path), create)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def lstat(self, name=None):
        """The stat of the file (or of ``name``) without following a link, or None."""
        if self.fd is None:
            return None
        try:
            return os.stat(name or self.name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def read(self):
        """The file's bytes, or None when it does not exist; never through a link."""
        if self.fd is None:
            return None
        try:
            fd = os.open(self.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as handle:
            return handle.read()


def refuse_link(module, place):
    """Fail when the path is a symbolic link: kv_file never writes, copies or removes through
    one, so a link planted at the path cannot redirect a write or leak a file into a backup."""
    info = place.lstat()
    if info is not None and stat.S_ISLNK(info.st_mode):
        module.fail_json(
            msg="%s is a symbolic link: kv_file does not follow links; point path at the "
                "link's target, or remove the link" % place.path,
            path=place.path,
        )
    return info


def file_args(module, path):
    """The owner/group/mode/SELinux options for ``path``, which stays unexpanded (Ansible's
    load_file_common_arguments would expand $VAR and ~ in it from the runner's environment)."""
    args = module.load_file_common_arguments(module.params, path=path)
    args["path"] = path
    return args


def write_file(module, place, data, attrs):
    """Replace the file with ``data``: a temporary file created exclusively (random name, 0600)
    in its folder, flushed to disk, given the old file's owner and mode or ``attrs``, then
    renamed over the file (a rename replaces a link planted meanwhile; it never follows one).
    All of it relative to the folder's descriptor, except the attributes Ansible sets by path,
    on the temporary file only (module_utils/basic.py set_fs_attributes_if_different)."""
    tmp = ".%s.%s.tmp" % (place.name, secrets.token_hex(8))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(tmp, flags, 0o600, dir_fd=place.fd)
    try:
        with os.fdopen(fd, "wb") as handle:
            old = place.lstat()
            if old is not None and stat.S_ISREG(old.st_mode):
                try:
                    os.fchown(handle.fileno(), old.st_uid, old.st_gid)
                except PermissionError:  # not root: the file becomes ours, as any rewrite would
                    pass
                os.fchmod(handle.fileno(), stat.S_IMODE(old.st_mode))
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp_path = os.path.join(os.path.dirname(place.path), tmp)
        module.set_fs_attributes_if_different(dict(attrs, path=tmp_path), False, expand=False)
        os.rename(tmp, place.name, src_dir_fd=place.fd, dst_dir_fd=place.fd)
    finally:
        if place.lstat(tmp) is not None:
            os.unlink(tmp, dir_fd=place.fd)
    os.fsync(place.fd)


# ---------------------------------------------------------------- operations


def op_write(module, path, fmt, values):
    try:
        content = render(values, fmt)
    except KVError as exc:
        module.fail_json(msg="%s: %s" % (path, exc), path=path)
    data = content.encode("utf-8")
    desired = flatten(normalize(values))
    with Place(path, create=not module.check_mode) as place:
        return _write_at(module, place, fmt, values, content, data, desired)


def _write_at(module, place, fmt, values, content, data, desired):
    path = place.path
    info = refuse_link(module, place)
    if info is not None and stat.S_ISDIR(info.st_mode):
        module.fail_json(msg="%s is a folder" % path, path=path)
    old = place.read()
    actual = {}
    if old is not None:
        try:
            actual = flatten(parse(old.decode("utf-8"), fmt))
        except (ValueError, UnicodeDecodeError) as exc:
            if module.check_mode:
                module.warn("%s cannot be read as %s (%s): every key counts as added"
                            % (path, fmt, exc))
    attrs = file_args(module, path)
    content_changed = old != data
    attr_diff = {"before": {}, "after": {}}
    if content_changed:
        if not module.check_mode:
            try:
                write_file(module, place, data, attrs)
            except OSError as exc:  # said as "PATH: reason", never with the temporary name
                module.fail_json(msg="%s: %s" % (path, exc.strerror or exc), path=path)
        changed = True
    else:
        changed = module.set_fs_attributes_if_different(attrs, False, attr_diff, expand=False)
    result = dict(
        changed=changed,
        path=path,
        format=fmt,
        sha256=hashlib.sha256(data).hexdigest(),
        keys=len(desired),
        drift=compute_drift(desired, actual, fmt),
    )
    result["changes"] = key_changes(desired, actual, result["drift"])
    if module._diff:
        diff = [dict(
            before_header=path,
            after_header=path,
            before=old.decode("utf-8", "replace") if old is not None else "",
            after=content,
        )]
        if attr_diff["before"] or attr_diff["after"]:
            diff.append(attr_diff)
        result["diff"] = diff
    return result


def op_remove(module, path, fmt=None):
    with Place(path) as place:
        info = refuse_link(module, place)
        if info is not None and stat.S_ISDIR(info.st_mode):
            module.fail_json(msg="%s is a folder" % path, path=path)
        exists = info is not None
        held = {}
        if exists and fmt:
            try:
                held = flatten(parse(place.read().decode("utf-8"), fmt))
            except (ValueError, UnicodeDecodeError, OSError):
                held = {}  # not readable as the format: the file goes, no keys to name
        if exists and not module.check_mode:
            os.unlink(place.name, dir_fd=place.fd)
    gone = compute_drift({}, held, fmt or "json")
    result = dict(changed=exists, path=path, removed=exists, changes=key_changes({}, held, gone))
    if module._diff:
        result["diff"] = dict(
            before={"path": path, "state": "file" if exists else "absent"},
            after={"path": path, "state": "absent"},
        )
    return result


def op_backup(module, path, backup_dir):
    with Place(path) as place:
        info = refuse_link(module, place)
        if info is None or not stat.S_ISREG(info.st_mode):
            module.warn("%s does not exist: nothing to back up" % path)
            return dict(changed=False, path=path, backup_path="")
        target = backup_name(path, backup_dir)
        if module.check_mode:
            return dict(changed=True, path=path, backup_path=target)
        # the copy is created exclusively and keeps the file's mode: never through a link
        source_fd = os.open(place.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                            dir_fd=place.fd)
        with os.fdopen(source_fd, "rb") as source, Place(target, create=True) as copy_place:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            fd = os.open(copy_place.name, flags, 0o600, dir_fd=copy_place.fd)
            with os.fdopen(fd, "wb") as copy:
                shutil.copyfileobj(source, copy)
                os.fchmod(copy.fileno(), stat.S_IMODE(os.fstat(source.fileno()).st_mode))
                copy.flush()
                os.fsync(copy.fileno())
    return dict(changed=True, path=path, backup_path=target)


class KVFileModule(AnsibleModule):
    """AnsibleModule without the file details added to a result holding ``path``: Ansible's
    add_path_info looks the path up with $VAR and ~ expanded, which kv_file never does."""

    def add_path_info(self, kwargs):
        return kwargs


def main():
    module = KVFileModule(
        argument_spec=dict(
            path=dict(type="str", required=True),
            format=dict(type="str", default="json", choices=list(FORMATS)),
            values=dict(type="dict"),
            operation=dict(type="str", default="write", choices=["write", "remove", "backup"]),
            backup_dir=dict(type="str"),
        ),
        required_if=[("operation", "write", ["values"])],
        add_file_common_args=True,
        supports_check_mode=True,
    )
    p = module.params
    path = p["path"]
    if not os.path.isabs(path):
        module.fail_json(msg="path must be absolute, got %r (it is never expanded: no $VAR, "
                             "no ~)" % path, path=path)
    path = os.path.normpath(path)
    if p["backup_dir"] is not None and not os.path.isabs(p["backup_dir"]):
        module.fail_json(msg="backup_dir must be absolute, got %r (it is never expanded)"
                             % p["backup_dir"], path=path)
    try:
        if p["operation"] == "write":
            result = op_write(module, path, p["format"], p["values"])
        elif p["operation"] == "remove":
            result = op_remove(module, path, p["format"])
        else:
            result = op_backup(module, path, p["backup_dir"])
    except NotAFolder:  # a file where a folder on the way should be: nothing written
        module.fail_json(msg="%s: Not a directory" % path, path=path)
    except UnsafeFolder as exc:  # nothing was read or written
        module.fail_json(msg="%s (path %s)" % (exc, path), path=path)
    except OSError as exc:  # permission denied, not a directory, disk full...
        where = exc.filename or path
        module.fail_json(msg="%s: %s" % (where, exc.strerror or exc), path=path)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
