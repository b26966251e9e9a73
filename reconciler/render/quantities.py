"""Kubernetes quantities in the form the apiserver stores them. Pure.

The apiserver rewrites every quantity it is given into its canonical form (`1000m` becomes `1`,
`1024Mi` becomes `1Gi`), so a rendered `1000m` would never equal the live `1` and every run
would find drift. Rendering the canonical form keeps desired and live equal."""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal

_BINARY = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL = {"m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?")


def canonical(quantity: str) -> str:
    """`quantity` (validated by the contract's pattern) as the apiserver writes it back: binary
    suffixes stay binary while the value is whole bytes, anything else is decimal, rounded up
    to thousandths, each with the largest suffix that keeps the number whole."""
    found = _QUANTITY.fullmatch(quantity)
    if found is None:
        raise ValueError(f"not a quantity: {quantity!r}")
    number, suffix = Decimal(found.group(1)), found.group(2) or ""
    if suffix in _BINARY:
        value = number * 1024 ** _BINARY[suffix]
        if value == value.to_integral_value():
            whole = int(value)
            for power, name in sorted(((p, n) for n, p in _BINARY.items()), reverse=True):
                if whole and whole % 1024**power == 0:
                    return f"{whole // 1024**power}{name}"
            return str(whole)
    else:
        value = number.scaleb(_DECIMAL[suffix])
    milli = int((value * 1000).to_integral_value(rounding=ROUND_CEILING))
    if milli == 0:
        return "0"
    for exponent, name in sorted(((e, n) for n, e in _DECIMAL.items() if e >= 0), reverse=True):
        if milli % (10**exponent * 1000) == 0:
            return f"{milli // (10**exponent * 1000)}{name}"
    return f"{milli}m"
