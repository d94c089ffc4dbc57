"""Text from disk or from the kernel on one line, as /proc escapes names.

A file name may hold a newline; written as it is into `.status` or the log it
would forge a line. /proc writes such bytes as a backslash and three octal
digits (seq_escape: a newline is \\012, a backslash \\134); so does iterfs.
"""

import logging


def escape(text, specials=""):
    """`text` with every unprintable character, backslash and character of
    `specials` written as \\ooo, one per byte of its UTF-8 (bytes that were not
    UTF-8, kept by surrogateescape, come back as the bytes they were)."""
    return "".join(_escape_character(c, specials) for c in str(text))


def _escape_character(c, specials):
    if c.isprintable() and c != "\\" and c not in specials:
        return c
    return "".join(f"\\{byte:03o}" for byte in c.encode("utf-8", "surrogateescape"))


class OneLineFilter(logging.Filter):
    """Escapes each record's message as escape() does: one line, whatever the
    names in it hold (a traceback still follows it on lines of its own)."""

    def filter(self, record):
        message = record.getMessage()
        escaped = escape(message)
        if escaped != message:
            record.msg, record.args = escaped, None
        return True
