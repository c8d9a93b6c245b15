/*
 * PIXER_SIMULATE: micrographs with exact truth (the pipeline's own test data; no downloads).
 * One task per (dataset, role); the role names the folder it writes: train_data or test_data.
 */
process PIXER_SIMULATE {
    tag "${meta.id}:${role}"
    label 'process_low'
    container "${params.container}"
    publishDir "${params.outdir}/${meta.id}", mode: params.publish_dir_mode

    input:
    tuple val(meta), val(role), val(seed), val(n)

    output:
    tuple val(meta), val(role), path("${role}_data"), emit: data

    script:
    """
    pixer-simulate --out ${role}_data --n ${n} --size ${params.sim_size} --apix ${meta.apix} \\
        --snr-db ${params.sim_snr_db} --seed ${seed} --no-progress ${params.simulate_args}
    """

    stub:
    """
    mkdir -p ${role}_data/micrographs ${role}_data/truth
    touch ${role}_data/micrographs/mic_0000.mrc ${role}_data/particles.star ${role}_data/map.mrc
    """
}
