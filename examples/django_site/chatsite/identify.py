"""``identify`` for ChatMiddleware: the Django user whose session cookie came with a request."""

from importlib import import_module

from django.conf import settings
from django.contrib.auth import get_user
from django.db import connections
from django.http import HttpRequest, parse_cookie


def identify(environ):
    """The username of the signed-in Django user of this request's session, or None.

    Django's own session engine loads the session and its auth API the user (who must still
    exist, be active, and have the password the session was made with).
    """
    key = parse_cookie(environ.get("HTTP_COOKIE", "")).get(settings.SESSION_COOKIE_NAME)
    if not key:
        return None
    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(key)
    try:
        user = get_user(request)
    finally:
        # Outside Django's request cycle nothing closes this greenlet's database connection.
        connections.close_all()
    return user.get_username() if user.is_authenticated else None
