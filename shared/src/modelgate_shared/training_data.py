"""The default training data, named once for the launcher and the training command.

The Pima Indians Diabetes dataset (from the US National Institute of Diabetes and Digestive
and Kidney Diseases): 768 patients, eight numeric measurements and a 0/1 ``class`` for the
onset of diabetes within five years, as a CSV without a header row. The URL is Jason
Brownlee's public copy; the sha256 pins that exact file, so a changed copy is refused.
"""

DEFAULT_TRAINING_DATA = "https://raw.githubusercontent.com/jbrownlee/Datasets/master/pima-indians-diabetes.data.csv"
DEFAULT_TRAINING_DATA_SHA256 = "6bfe5d0f379d17a0e0819b996407e3c09bf80febd4287f2ed212190dfff154af"
