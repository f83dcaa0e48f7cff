"""What every filter form shares: reading a query string, reporting what it ignored."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import date
from typing import Any, ClassVar

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.validators import ProhibitNullCharactersValidator
from django.http import QueryDict

from dashboard.models import Building, Space


class Text(forms.CharField):
    """Stripped text, optional; a NUL is left to the form to refuse in its own words."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, **kwargs)
        self.validators = [
            v for v in self.validators if not isinstance(v, ProhibitNullCharactersValidator)
        ]


class Choice(forms.ChoiceField):
    """One of fixed choices, optional, stripped first."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, **kwargs)

    def to_python(self, value: Any) -> str:
        return super().to_python(value).strip()


class DateInput(forms.DateInput):
    input_type = "date"


class DateTimeLocalInput(forms.DateTimeInput):
    input_type = "datetime-local"


class SearchInput(forms.TextInput):
    input_type = "search"


def uuid_or_none(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


def day_or_none(raw: str) -> date | None:
    """A date given as YYYY-MM-DD, or None when empty; anything else is refused."""
    if not raw:
        return None
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        raise forms.ValidationError("not a date (use YYYY-MM-DD).") from None
    # The first and last representable days cannot be shifted by a time zone or a day.
    if value in (date.min, date.max):
        raise forms.ValidationError("date out of range.")
    return value


def space_of(building: Building, raw: str) -> uuid.UUID | None:
    """The id of a space of ``building``, or None when empty; anything else is refused."""
    if not raw:
        return None
    space_id = uuid_or_none(raw)
    if space_id and Space.objects.filter(building=building, id=space_id).exists():
        return space_id
    raise forms.ValidationError("not a space of this building.")


class FilterForm(forms.Form):
    """Filters read from a query string: ``problems`` says what was ignored, ``query`` what applies.

    Subclasses set ``id_prefix`` (the inputs' ids), may map fields to parameter names in
    ``params`` (``from`` cannot be a field's name), name a field in problems other than by its
    label in ``names``, and give values left out of ``query`` in ``defaults``.
    """

    id_prefix: ClassVar[str] = "filter"
    params: ClassVar[dict[str, str]] = {}
    names: ClassVar[dict[str, str]] = {}
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: QueryDict) -> None:
        super().__init__(params, auto_id=f"{self.id_prefix}-%s", label_suffix="")
        self.problems: list[str] = []
        for name, errors in self.errors.items():
            if name != NON_FIELD_ERRORS:
                label = self.names.get(name, self.fields[name].label)
                self.problems.append(f"Ignored “{label}”: {errors[0]}")
        self.problems += [str(error) for error in self.non_field_errors()]
        # Each filter's value as applied: None when not given or ignored, else the default.
        self.applied: dict[str, Any] = {
            name: self.cleaned_data.get(name) or self.defaults.get(name) for name in self.fields
        }
        shown = QueryDict(mutable=True)
        self.query = QueryDict(mutable=True)
        for name, value in self.applied.items():
            if value is not None:
                shown[self.add_prefix(name)] = str(value)
                if value != self.defaults.get(name):
                    self.query[self.add_prefix(name)] = str(value)
        self.data = shown  # the inputs show what applies, not what was asked

    def add_prefix(self, field_name: str) -> str:
        return self.params.get(field_name, field_name)

    def offer(self, name: str, choices: Iterable[tuple[str, str]]) -> None:
        """Give a dropdown its choices (only pages show them: exports need not look them up)."""
        widget = self.fields[name].widget
        assert isinstance(widget, forms.Select)
        widget.choices = list(choices)
