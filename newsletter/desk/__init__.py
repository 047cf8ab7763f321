"""The editor's desk: plain functions behind the `/admin` pages (sign-in, audit, editing a
draft, the progress and report of a send, papers and subscribers). The web routes are thin
shells over these; releasing an issue is `newsletter.release`, shared with the CLI and the
clock."""
