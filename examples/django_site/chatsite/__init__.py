"""A minimal Django site whose signed-in users are the chat's users (see ../serve.py)."""
