"""The boundary to the automation layer (Pulumi Automation API) in ``automation/``."""
