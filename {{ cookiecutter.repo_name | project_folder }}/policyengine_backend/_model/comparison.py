"""The change a policy makes to a household, for ``/compare``.

The change has the shape of the household as it was sent, with
``reform - baseline`` in place of each value it asked for. Values from axes
are lists, subtracted point by point. A value that is not a number (an
enum's name, a true/false, "Infinity") has no difference: it is ``null``.

Numbers are subtracted as the decimals the answers show: 3834.6 - 3486.0
is 348.6, where binary floating point would give 348.5999999999999.
"""

import copy
from decimal import Decimal
from typing import Any

from policyengine_backend._model.household import requested_values


def change(household: dict, baseline: dict, reform: dict) -> dict:
    """``household`` with reform minus baseline for every requested value."""
    result = copy.deepcopy(household)
    for group, member, variable, period in requested_values(household):
        before = baseline[group][member][variable][period]
        after = reform[group][member][variable][period]
        result[group][member][variable][period] = difference(before, after)
    return result


def difference(before: Any, after: Any) -> Any:
    if isinstance(before, list) and isinstance(after, list):
        return [difference(b, a) for b, a in zip(before, after, strict=True)]
    if not (is_number(before) and is_number(after)):
        return None
    if isinstance(before, int) and isinstance(after, int):
        return after - before
    # repr is the shortest text that reads back as the same float.
    return float(Decimal(repr(after)) - Decimal(repr(before)))


def is_number(value: Any) -> bool:
    # bool is an int in Python, but true - false is not a change in money.
    return isinstance(value, int | float) and not isinstance(value, bool)
