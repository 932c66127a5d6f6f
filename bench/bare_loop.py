"""The loop a user would write by hand with pyarrow: read batches, predict, write Parquet."""

import sys
import time

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main(model_path: str, source: str, target: str, batch_size: int = 65536) -> None:
    model = joblib.load(model_path)
    start = time.perf_counter()
    reader = pq.ParquetFile(source)
    writer = None
    offset = rows = 0
    for batch in reader.iter_batches(batch_size=batch_size):
        features = np.column_stack([column.to_numpy() for column in batch.columns])
        prediction = model.predict(features)
        table = pa.table({"_row": np.arange(offset, offset + batch.num_rows), "prediction": prediction})
        if writer is None:
            writer = pq.ParquetWriter(target, table.schema)
        writer.write_table(table)
        offset += batch.num_rows
        rows += batch.num_rows
    if writer is not None:
        writer.close()
    print(f"LOOP_SECONDS {time.perf_counter() - start:.4f} ROWS {rows}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
