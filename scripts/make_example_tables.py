"""Rebuild the example tables in data/ from the copies that scikit-learn and palmerpenguins ship.

Needs `pip install scikit-learn palmerpenguins` (only to regenerate; dltrain does not use them).
The files it writes are committed, so a fresh clone needs nothing from here.
"""

import sqlite3
from pathlib import Path

from palmerpenguins import load_penguins
from sklearn import datasets

DATA = Path(__file__).resolve().parent.parent / "data"


def main() -> None:
    iris = datasets.load_iris(as_frame=True)
    frame = iris.frame.rename(
        columns={
            "sepal length (cm)": "sepal_length",
            "sepal width (cm)": "sepal_width",
            "petal length (cm)": "petal_length",
            "petal width (cm)": "petal_width",
        }
    )
    frame["species"] = [iris.target_names[t] for t in frame.pop("target")]
    frame.to_csv(DATA / "iris.csv", index=False)

    cancer = datasets.load_breast_cancer(as_frame=True)
    frame = cancer.frame.copy()
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    frame["diagnosis"] = [cancer.target_names[t] for t in frame.pop("target")]
    frame.insert(0, "patient_id", range(1, len(frame) + 1))
    frame.to_csv(DATA / "breast_cancer.csv", index=False, float_format="%.6g")

    diabetes = datasets.load_diabetes(as_frame=True, scaled=False)
    frame = diabetes.frame.rename(columns={"target": "progression"})
    frame.to_csv(DATA / "diabetes.csv", index=False, float_format="%.6g")

    load_penguins().to_csv(DATA / "penguins.csv", index=False)

    wine = datasets.load_wine(as_frame=True)
    frame = wine.frame.rename(columns={"od280/od315_of_diluted_wines": "od280_od315"})
    frame["cultivar"] = ["cultivar_" + str(t + 1) for t in frame.pop("target")]
    db = DATA / "wine.db"
    db.unlink(missing_ok=True)
    with sqlite3.connect(db) as connection:
        frame.to_sql("wine", connection, index=False)


if __name__ == "__main__":
    main()
