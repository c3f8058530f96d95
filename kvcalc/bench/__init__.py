"""`kvcalc bench`: timed decode steps through real attention layers and caches (torch).

``report.py`` is torch-free (results and tables); ``runner.py`` imports torch.
"""
