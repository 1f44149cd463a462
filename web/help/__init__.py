"""The public help center (`/help`): search, categories and published articles, no sign-in."""
