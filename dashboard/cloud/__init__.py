"""The Gooee Cloud REST API: an HTTP client (paging, retries) and the mapping of its objects.

Plain Python with httpx, no Django: it imports only ``contract``; ``live`` turns its output
into rows.
"""
