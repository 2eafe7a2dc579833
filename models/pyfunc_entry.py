"""Entry file of the logged MLflow model ("models from code"): no pickled Python object is stored;
MLflow runs this file at load time and takes the model it sets."""

import mlflow.models

from models.served import CountyBeltModel

mlflow.models.set_model(CountyBeltModel())
