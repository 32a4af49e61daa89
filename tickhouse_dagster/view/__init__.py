"""The quick look: a Streamlit page over the bar tables, read straight from the Iceberg catalog."""
