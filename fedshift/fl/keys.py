"""Message types and record keys, shared by the ClientApp and the ServerApp."""

# message types (Flower: "train", "evaluate" or "query.<name>")
TRAIN = "train"
EVALUATE = "evaluate"
QUERY_READINESS = "query.readiness"
READINESS_HANDLER = "readiness"  # @app.query(READINESS_HANDLER)
MODEL_HANDLER = "model"  # the final model, sent to every site after the last round
QUERY_MODEL = f"query.{MODEL_HANDLER}"

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
ALIGN = "align"  # train: use the strategy's alignment term this round (moments, fedshift)
BURES = "bures"  # evaluate: apply the site's Bures-Wasserstein map before the head
# train, fed.secure_updates: the site multiplies its cases by this for its FedAvg weight
# (masked with its update; the message also carries ROUND_ID, the secure round's name)
FEDAVG_SCALE = "fedavg-scale"
# train, fed.dp_epsilon: the site clips its update to this L2 norm and weighs itself
# uniformly (fedshift.fl.privacy)
CLIP_NORM = "dp-clip-norm"

# metric and site keys the sites send
NUM_EXAMPLES = "num-examples"  # training cases
# metric key the coordinator adds to each training reply: what FedAvg weights by (the
# training cases, times fed.unlabelled_weight at a site without labels)
FEDAVG_WEIGHT = "fedavg-weight"
# metric key of the one reply that carries a secure mean: how many sites it sums
SUMMED_SITES = "summed-sites"
# metric key the coordinator adds to a site that trained but dropped out of the secure sum
DROPPED = "dropped"
SITE_NAME = "name"
LEVEL = "level"
N_CASES = "n-cases"
N_USABLE = "n-usable"
SPACING = "spacing-mm"  # readiness: median voxel size of the site's training images (RAS)
PACKAGE = "package"  # model: the package's description (JSON), bundle.write_bundle's kwargs
MODEL_DIR = "model-dir"  # model reply: where the site keeps it
LABELLED = "labelled"

# secure statistics rounds (fedshift.fl.secure_rounds <-> fedshift.fl.client_secure);
# a query action must be a Python identifier: "query.secagg_keys" -> @app.query("secagg_keys")
SECAGG_KEYS_HANDLER = "secagg_keys"  # step 0: compute statistics, advertise public keys
SECAGG_SHARES_HANDLER = "secagg_shares"  # step 1: key directory in, encrypted shares out
SECAGG_MASKED_HANDLER = "secagg_masked"  # step 2: share inbox in, masked vector out
SECAGG_UNMASK_HANDLER = "secagg_unmask"  # step 3: unmask request in, shares out
REFERENCE_HANDLER = "reference"  # the federation's reference in, diagnosis scalars out
QUERY_SECAGG_KEYS = f"query.{SECAGG_KEYS_HANDLER}"
QUERY_SECAGG_SHARES = f"query.{SECAGG_SHARES_HANDLER}"
QUERY_SECAGG_MASKED = f"query.{SECAGG_MASKED_HANDLER}"
QUERY_SECAGG_UNMASK = f"query.{SECAGG_UNMASK_HANDLER}"
QUERY_REFERENCE = f"query.{REFERENCE_HANDLER}"

SECAGG = "secagg"  # ConfigRecord: one protocol message (fedshift.secagg.messages)
SECAGG_VALUES = "secagg-values"  # ArrayRecord: MaskedInput.values (uint64)
REFERENCE = "reference"  # ArrayRecord: Reference.to_arrays()
INDICATORS = "indicators"  # MetricRecord: the site's diagnosis scalars
ROUND_ID = "round-id"  # config: names a secure round (binds every key derivation)
STATS_ROUND = "stats-round"  # config: the global model is the one after this server round
