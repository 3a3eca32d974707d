"""Django's pages, and the chat page at / (the chat's own requests never reach Django)."""

from django.contrib.auth import views as auth_views
from django.urls import path, re_path
from django.views.static import serve

from chatsite import views

urlpatterns = [
    path("", views.chat_page, name="chat"),
    # The page's script and style, from chatwsgi's static/ (its page asks for /chat.js, /chat.css).
    re_path(r"^(?P<path>chat\.(?:js|css))$", serve, {"document_root": views.CHAT_STATIC}),
    path("accounts/", views.account, name="account"),
    path("accounts/login/", auth_views.LoginView.as_view(template_name="chatsite/login.html"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]
