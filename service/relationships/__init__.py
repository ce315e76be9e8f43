"""A relationship's life in the service: the application that decides and saves
commands, the repository that loads and stores relationships, their codec, and
the read models' queries."""
