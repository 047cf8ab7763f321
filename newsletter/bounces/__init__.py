"""SMTP bounces: VERP return paths out, DSNs read back from the bounce mailbox over IMAP."""
