"""Notifications (port 8016): Telegram bot for alerts and commands."""
