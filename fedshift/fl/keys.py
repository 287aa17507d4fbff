"""Message types and record keys, shared by the ClientApp and the ServerApp."""

# message types (Flower: "train", "evaluate" or "query.<name>")
TRAIN = "train"
EVALUATE = "evaluate"
QUERY_READINESS = "query.readiness"
READINESS_HANDLER = "readiness"  # @app.query(READINESS_HANDLER)

# record keys inside a RecordDict (the strategy's defaults for arrays and config)
ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
SITE = "site"  # ConfigRecord naming the replying site

# config keys the server sends
SERVER_ROUND = "server-round"  # set by Flower's strategies
PROXIMAL_MU = "proximal-mu"  # set by Flower's FedProx
SPLIT = "split"  # evaluate: "val" or "test"
THRESHOLD = "threshold"  # evaluate: decision threshold for sites without validation labels

# metric and site keys the sites send
NUM_EXAMPLES = "num-examples"  # training cases, the FedAvg weight
SITE_NAME = "name"
LEVEL = "level"
N_CASES = "n-cases"
N_USABLE = "n-usable"
LABELLED = "labelled"
