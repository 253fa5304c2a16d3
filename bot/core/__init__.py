"""What both bots share: the engine client, option parsing, progress text and every user-visible string."""
