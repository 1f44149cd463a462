"""Services: module-level verbs that change the domain. They flush; the caller commits."""
