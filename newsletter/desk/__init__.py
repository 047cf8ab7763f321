"""The editor's desk: plain functions behind the `/admin` pages (sign-in, audit, editing a
draft, releasing and reporting a send, papers and subscribers). The web routes are thin
shells over these; the CLI or the scheduler may call them too."""
