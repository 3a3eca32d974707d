"""The example's own views: the chat page for signed-in users, and an account page."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render

from chatwsgi.app import PAGE_HEADERS, STATIC_DIR

CHAT_STATIC = STATIC_DIR


@login_required
def chat_page(request):
    """chatwsgi's chat page, with the headers chatwsgi serves it with (its CSP among them)."""
    response = HttpResponse(
        (CHAT_STATIC / "index.html").read_bytes(), content_type="text/html; charset=utf-8"
    )
    for name, value in PAGE_HEADERS:
        response[name] = value
    return response


@login_required
def account(request):
    """Who is signed in, a link to the chat and a sign-out button."""
    return render(request, "chatsite/account.html")
