/*
 * PIXER_BENCHMARK: pixer benchmark over a samplesheet of datasets (one row each, e.g. EMPIAR
 * entries): picks every dataset with the model (--model, or the row's own), scores it against
 * the truth, writes one comparison table. Picking is spread by Dask (params.pick_cluster).
 */
process PIXER_BENCHMARK {
    tag "${meta.id}"
    label 'process_gpu'
    container "${params.container}"
    publishDir "${params.outdir}", mode: params.publish_dir_mode

    input:
    tuple val(meta), path(samplesheet), path(model)

    output:
    tuple val(meta), path("benchmark"), emit: benchmark
    tuple val(meta), path("benchmark/benchmark.csv"), emit: table

    script:
    def with_model = model ? "--model ${model}" : ''
    def workers = params.pick_workers ? "--workers ${params.pick_workers}" : ''
    """
    pixer-benchmark --samplesheet ${samplesheet} ${with_model} --out benchmark --cluster ${params.pick_cluster} \\
        ${workers} --device ${params.device} --no-progress ${params.benchmark_args}
    """

    stub:
    """
    mkdir -p benchmark && touch benchmark/benchmark.csv benchmark/benchmark.md
    """
}
