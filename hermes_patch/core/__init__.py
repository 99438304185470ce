"""The pure core: source text in, outcomes out.

``source`` (byte-exact text, lines, top-level statements), ``workspace``
(the files of one ``hermes_cli`` package as patches see them), ``patch``
and ``edits`` (what a patch is: facts about Hermes and edits as data),
``engine`` (detect, plan, prove), ``codemod`` (the libcst transformers the
engine inserts with), ``messages`` and ``errors`` (every failure, written
once), ``hostnames`` (the host and origin values patches accept).

No module here writes a file, reads the environment or prints: the shell
(``hermes_patch.app`` and the command line) does, and the integrations
(``hermes_patch.integrations``) talk to git, systemd and running dashboards.
"""
