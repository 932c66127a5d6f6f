"""Input and output adapters: Arrow <-> what an API function takes and returns."""

from kappa.adapters.base import InputAdapter as InputAdapter
from kappa.adapters.base import OutputAdapter as OutputAdapter
from kappa.adapters.dataframe import DataframeInput as DataframeInput
from kappa.adapters.files import FileInput as FileInput
from kappa.adapters.files import ImageInput as ImageInput
from kappa.adapters.json_input import JsonInput as JsonInput
from kappa.adapters.numpy_input import NumpyInput as NumpyInput
from kappa.adapters.outputs import DataframeOutput as DataframeOutput
from kappa.adapters.outputs import DefaultOutput as DefaultOutput
from kappa.adapters.outputs import JsonOutput as JsonOutput
