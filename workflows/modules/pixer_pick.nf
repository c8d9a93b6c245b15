/*
 * PIXER_PICK: pixer's picker over one dataset's micrographs: a Dask LocalCluster inside the
 * task (default), SLURM worker jobs through dask-jobqueue (params.pick_cluster = 'slurm'), or a
 * plain loop ('none').
 */
process PIXER_PICK {
    tag "${meta.id}"
    label 'process_gpu'
    container "${params.container}"
    publishDir "${params.outdir}/${meta.id}", mode: params.publish_dir_mode

    input:
    tuple val(meta), path(micrographs), path(model)

    output:
    tuple val(meta), path("picks"), emit: picks
    tuple val(meta), path("picks/particles.star"), emit: particles

    script:
    def apix = meta.apix ? "--apix ${meta.apix}" : ''
    def workers = params.pick_workers ? "--workers ${params.pick_workers}" : ''
    """
    pixer-pick --micrographs ${micrographs} --model ${model} --diameter ${meta.diameter} ${apix} --out picks \\
        --threshold ${params.threshold} --cluster ${params.pick_cluster} ${workers} \\
        --batch-micrographs ${params.pick_batch} --device ${params.device} --no-progress ${params.pick_args}
    """

    stub:
    """
    mkdir -p picks && touch picks/particles.star picks/picks.csv picks/summary.csv
    """
}
