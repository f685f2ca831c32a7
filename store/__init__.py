"""The store: SQLModel tables, the database engine and query functions. Knows tables, not Streamlit."""
