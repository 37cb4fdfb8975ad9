"""Which numbers an extension may dial out, and which are emergency numbers.

Patterns are Asterisk's extension patterns without the leading ``_`` (Asterisk
documentation, "Pattern Matching"): ``X`` is any digit 0-9, ``Z`` 1-9, ``N`` 2-9,
``[15-7]`` one of the digits listed or in a range, and at the end ``.`` one or more
characters more, ``!`` zero or more; any other ``0-9 * #`` stands for itself.
``["NXXXXXX", "1800NXXXXXX", "0."]``: local seven-digit numbers, toll-free, anything
beginning with 0.
"""

import re

MAX_PATTERN = 32
_CLASSES = {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]"}


class PatternError(ValueError):
    """A pattern we cannot read; the message names the pattern and the problem."""


def compile_pattern(pattern: str) -> re.Pattern:
    """The regular expression a dial pattern stands for (whole numbers only)."""
    if not isinstance(pattern, str) or not 1 <= len(pattern) <= MAX_PATTERN:
        raise PatternError(f"pattern {pattern!r}: must be 1 to {MAX_PATTERN} characters")
    out = []
    i = 0
    p = pattern.upper()
    while i < len(p):
        c = p[i]
        if c in "0123456789*#":
            out.append(re.escape(c))
        elif c in _CLASSES:
            out.append(_CLASSES[c])
        elif c == "[":
            j = p.find("]", i)
            body = p[i + 1:j] if j > 0 else ""
            if j < 0 or not body or not re.fullmatch(r"([0-9](-[0-9])?)+", body):
                raise PatternError(f"pattern {pattern!r}: '[' must hold digits or ranges "
                                   "and close with ']', like [1-5]")
            out.append(f"[{body}]")
            i = j
        elif c in ".!" and i == len(p) - 1:
            out.append("[0-9*#]+" if c == "." else "[0-9*#]*")
        else:
            raise PatternError(f"pattern {pattern!r}: {c!r} is not 0-9 * # X Z N [..], "
                               "or '.' or '!' at the end")
        i += 1
    return re.compile("".join(out))


def matches(patterns, number: str) -> bool:
    """Whether ``number`` is one of ``patterns`` (None: every number is)."""
    if patterns is None:
        return True
    return any(compile_pattern(p).fullmatch(number) for p in patterns)
