"""{{ cookiecutter.project_name }}: this study's own code (data preparation, analysis) beside
insectml's {{ cookiecutter.family }} pipeline."""

__version__ = "0.1.0"
