"""Integrations: what hermes-patch does with the world around a Hermes install.

Git (``git_clean``, ``git_filter``, ``git_hooks``, ``git_index``,
``git_repo``, ``git_stash``), systemd (``systemd``), the hooks and
drop-ins as one feature (``auto_apply``, ``installed``,
``stored_command``), ``hermes update`` (``update``), code not installed yet
(``incoming``), running dashboards (``restart``, ``verify`` and the
``probe`` it runs inside Hermes's interpreter) and the session token file
(``session_token``). Each receives a small typed context
(:mod:`hermes_patch.context`), never the whole application.
"""
