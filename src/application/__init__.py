"""Use cases of reportgen; they depend only on the domain and on the ports declared here."""
