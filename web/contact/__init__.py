"""The public contact form: live article suggestions, deflection, and web tickets."""
