"""The chat for a Django site's users: ``python examples/django_site/serve.py``, then open the URL it
prints and sign in as demo / demo (another user: ``python examples/django_site/manage.py
ensure_user bob secret``, then a second browser or a private window).

Django serves every page (its LoginView at /accounts/login/, an account page with a sign-out
button at /accounts/, and the chat page at /, for signed-in users only); ``ChatMiddleware`` in
front of it serves the chat, naming each connection by the Django user its session cookie
belongs to (``chatsite/identify.py``). Nobody picks a nickname, and a visitor not signed in is
refused the chat.

Flags: --host (127.0.0.1), --port (8000), --data (the folder of the SQLite database and the
secret key; also CHATSITE_DATA, default examples/django_site/data). On each start the database
is migrated and the user demo (password demo) made or reset. SIGINT/SIGTERM stop it.
"""

from gevent import monkey

monkey.patch_all()  # before anything imports socket: the only monkey-patching of the example

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the chatsite package
sys.path.insert(1, str(HERE.parents[1]))  # chatwsgi, when run from a checkout without installing it


def parse_args(argv):
    """Command-line flags."""
    parser = argparse.ArgumentParser(description="chatwsgi in front of a Django site")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--data", default=os.environ.get("CHATSITE_DATA", str(HERE / "data")))
    return parser.parse_args(argv)


def build_app():
    """Django's WSGI app with the chat in front, its users named by their Django usernames."""
    from chatsite.identify import identify
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    from chatwsgi import ChatMiddleware

    site = get_wsgi_application()  # sets Django up
    call_command("migrate", interactive=False, verbosity=0)
    call_command("ensure_user", "demo", "demo", verbosity=0)
    return ChatMiddleware(site, identify=identify)


def main(argv=None):
    """Set Django up, build the app and serve until a signal."""
    args = parse_args(argv)
    os.environ["CHATSITE_DATA"] = args.data
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatsite.settings")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from chatwsgi import make_server

    app = build_app()
    server = make_server(app, host=args.host, port=args.port)
    server.start()
    host, port = server.address[:2]
    print(
        "chatsite serving on http://%s:%d (sign in as demo / demo; Ctrl-C stops)" % (host, port), flush=True
    )
    stopping = gevent.event.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        gevent.signal_handler(signum, stopping.set)
    stopping.wait()
    app.stopping = True
    app.service.shutdown("The site is stopping.")
    server.stop(timeout=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
