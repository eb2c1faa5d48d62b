"""A strict parser of the Prometheus text exposition format (version 0.0.4), for tests.

parse(text) returns {(name, ((label, value), ...)): float} and raises ValueError on anything
a Prometheus server would reject or that breaks the format's rules: bad names, bad escapes,
unparsable values, a sample before or outside its family's # TYPE, a family declared twice or
split, duplicate series, a histogram without le / +Inf bucket / _count equal to the +Inf
bucket, a negative counter, a missing final newline.
"""
import math
import re

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count", "")}


def _value(s, where):
    if s in ("+Inf", "Inf"):
        return math.inf
    if s == "-Inf":
        return -math.inf
    if s == "NaN":
        return math.nan
    if not re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", s):
        raise ValueError(f"{where}: bad value {s!r}")
    return float(s)


def _labels(s, where):
    """s is the text between { and }; returns a tuple of (name, value) sorted by name."""
    out = {}
    i = 0
    while i < len(s):
        m = re.match(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", s[i:])
        if not m:
            raise ValueError(f"{where}: bad label at {s[i:]!r}")
        name = m.group(1)
        i += m.end()
        val = []
        while True:
            if i >= len(s):
                raise ValueError(f"{where}: unterminated label value")
            c = s[i]
            if c == "\\":
                if i + 1 >= len(s) or s[i + 1] not in '\\"n':
                    raise ValueError(f"{where}: bad escape in label value")
                val.append({"\\": "\\", '"': '"', "n": "\n"}[s[i + 1]])
                i += 2
            elif c == '"':
                i += 1
                break
            elif c == "\n":
                raise ValueError(f"{where}: newline in label value")
            else:
                val.append(c)
                i += 1
        if name in out:
            raise ValueError(f"{where}: label {name!r} twice")
        out[name] = "".join(val)
        if i < len(s):
            if s[i] != ",":
                raise ValueError(f"{where}: expected ',' in labels")
            i += 1
    return tuple(sorted(out.items()))


def _family(name, types):
    """The declared family a sample name belongs to."""
    if name in types and types[name] not in ("histogram",):
        return name
    for fam, typ in types.items():
        for suf in SUFFIXES.get(typ, ()):
            if suf and name == fam + suf:
                return fam
    if name in types:
        return name
    return None


def parse(text):
    if text and not text.endswith("\n"):
        raise ValueError("no newline at the end")
    types, helps, samples = {}, {}, {}
    closed = set()
    current = None
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = f"line {n}"
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not NAME.match(name):
                    raise ValueError(f"{where}: bad metric name {name!r}")
                if parts[1] == "TYPE":
                    typ = parts[3] if len(parts) == 4 else ""
                    if typ not in TYPES:
                        raise ValueError(f"{where}: bad type {typ!r}")
                    if name in types:
                        raise ValueError(f"{where}: second TYPE for {name}")
                    if any(k[0] == name or _family(k[0], {name: typ}) == name for k in samples):
                        raise ValueError(f"{where}: TYPE of {name} after its samples")
                    types[name] = typ
                else:
                    if name in helps:
                        raise ValueError(f"{where}: second HELP for {name}")
                    helps[name] = parts[3] if len(parts) == 4 else ""
            continue  # other comments are allowed
        m = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?[ \t]+(\S+)([ \t]+(-?\d+))?", line)
        if not m:
            raise ValueError(f"{where}: not a sample: {line!r}")
        name, labels = m.group(1), _labels(m.group(3) or "", where)
        value = _value(m.group(4), where)
        fam = _family(name, types)
        if fam is None:
            raise ValueError(f"{where}: sample {name} without a # TYPE before it")
        if fam != current:
            if fam in closed:
                raise ValueError(f"{where}: samples of {fam} are not together")
            if current is not None:
                closed.add(current)
            current = fam
        key = (name, labels)
        if key in samples:
            raise ValueError(f"{where}: duplicate series {name}{dict(labels)}")
        typ = types[fam]
        if typ == "counter" and (value < 0 or math.isnan(value)):
            raise ValueError(f"{where}: counter {name} is {value}")
        if typ == "histogram" and name == fam + "_bucket" and "le" not in dict(labels):
            raise ValueError(f"{where}: bucket without le")
        samples[key] = value
    for fam, typ in types.items():
        if typ != "histogram":
            continue
        series = {}
        for (name, labels), v in samples.items():
            if name == fam + "_bucket":
                d = dict(labels)
                le = _value(d.pop("le"), fam)
                series.setdefault(tuple(sorted(d.items())), []).append((le, v))
        for rest, buckets in series.items():
            buckets.sort()
            if buckets[-1][0] != math.inf:
                raise ValueError(f"{fam}: no +Inf bucket")
            if any(b[1] > a[1] for b, a in zip(buckets, buckets[1:])):
                raise ValueError(f"{fam}: buckets are not cumulative")
            if samples.get((fam + "_count", rest)) != buckets[-1][1]:
                raise ValueError(f"{fam}: _count differs from the +Inf bucket")
    return samples


def total(samples, name, **labels):
    """Sum of the series called `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))
