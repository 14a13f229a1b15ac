"""``python -m suite_core keygen``: create a server keyring.

With ``-o FILE`` a new keyring file (mode 600, never over an existing file)
holding one fresh key; without it the key line is printed, to add at the top
of an existing keyring (rotation: the first key encrypts, the others still
decrypt).
"""

import argparse
import sys

from .keyring import (
    CONFIG_OPTION,
    ENV_KEYRING_FILE,
    SuiteError,
    generate_key_line,
    write_new_keyring,
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m suite_core", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    keygen = sub.add_parser("keygen", help="generate a keyring key")
    keygen.add_argument("--key-id", help="the new key's id (default: kYYYYMMDD-xxxx)")
    keygen.add_argument("-o", "--output", help="new keyring file (mode 600)")
    args = parser.parse_args(argv)
    try:
        if not args.output:
            print(generate_key_line(args.key_id))
            return 0
        key_id = write_new_keyring(args.output, args.key_id)
    except FileExistsError:
        print(f"error: {args.output} already exists; not overwritten", file=sys.stderr)
        return 1
    except (SuiteError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"new key {key_id} written to {args.output} (mode 600); point "
        f"{ENV_KEYRING_FILE} or Odoo's {CONFIG_OPTION} at it and KEEP A COPY "
        "OFFLINE: what it encrypts cannot be read without it",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
