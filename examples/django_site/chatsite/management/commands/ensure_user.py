"""``manage.py ensure_user NAME PASSWORD``: make a user (or set its password) for trying the chat."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the user NAME with PASSWORD, or set the password of that user."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("password")

    def handle(self, username, password, **options):
        user, created = get_user_model().objects.get_or_create(username=username)
        user.set_password(password)
        user.save()
        if options["verbosity"]:
            self.stdout.write("%s user %s" % ("created" if created else "updated", username))
