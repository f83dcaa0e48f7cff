"""The list pages' filters as Django forms: fault alarms, the activity log, rejected payloads.

A filter form reads the query string and never refuses it: a bad value is ignored and said so
("Ignored “Level”: …"), the others apply. The form then shows the filters applied (its
dropdowns render from its choices), and ``query`` holds them for pager and export links
(written by ``{% querystring %}``): bad parameters dropped, defaults left out.
"""

from dashboard.filters.activity import ActivityFilter
from dashboard.filters.alarms import AlarmFilter
from dashboard.filters.base import FilterForm
from dashboard.filters.rejections import RejectionFilter, kind_choices

__all__ = ["ActivityFilter", "AlarmFilter", "FilterForm", "RejectionFilter", "kind_choices"]
