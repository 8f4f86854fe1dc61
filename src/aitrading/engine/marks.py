"""What `AccountBook.mark` keeps of each position between quotes: its profit as integer coefficients.

MT5's profit of a whole position at raw price `p` is sign × (p × volume − cost) × contract size × rate,
rounded half away from zero to the account currency's digits (`AccountProfit.of_position`). With the sign,
the contract size's numerator and 10^digits folded into two integers once per position, a quote costs one
product, one difference and one division (`AccountProfit.value`), and the profit's integer value in units of
10^-digits lets the book sum the floating result and derive the account state on integers too
(`model.accounts.FloatingResults`). A mark belongs to one `Position` object and one profit function: a
deal, a reconciliation or a restart that puts another object in the books, or new specs, make a new one.
"""

from __future__ import annotations

from aitrading.model.positions import Position

__all__ = ["PositionMark"]


class PositionMark:
    """One position's integer coefficients and its last value (`position` is the object in the books)."""

    __slots__ = (
        "currency",
        "den",
        "digits",
        "generation",
        "offset",
        "per_price",
        "position",
        "price",
        "profit",
        "swap_units",
        "units",
    )

    def __init__(
        self,
        position: Position,
        generation: int,
        per_price: int,
        offset: int,
        den: int,
        currency: str | None,
        digits: int,
        swap_units: int | None,
    ) -> None:
        self.position = position
        self.generation = generation
        self.per_price = per_price
        """sign × raw volume × contract size numerator × 10^digits."""
        self.offset = offset
        """sign × raw cost × contract size numerator × 10^digits."""
        self.den = den
        """PRICE_SCALE × VOLUME_SCALE × contract size denominator."""
        self.currency = currency
        """The profit currency when it is not the account's (a rate converts it), else None."""
        self.digits = digits
        self.swap_units = swap_units
        """The position's swap in units of 10^-digits; None when it is off that grid or huge."""
        self.price = -1
        self.units: int | None = None
        """`profit` in units of 10^-digits; None until this mark valued the position (or when huge)."""
        self.profit = position.profit
