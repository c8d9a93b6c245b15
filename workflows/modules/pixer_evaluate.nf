/*
 * PIXER_EVALUATE: picks against true coordinates (one-to-one matching; P/R/F1, AUPRC).
 */
process PIXER_EVALUATE {
    tag "${meta.id}"
    label 'process_single'
    container "${params.container}"
    publishDir "${params.outdir}/${meta.id}", mode: params.publish_dir_mode

    input:
    tuple val(meta), path(picks), path(truth)

    output:
    tuple val(meta), path("evaluation"), emit: evaluation
    tuple val(meta), path("evaluation/metrics.json"), emit: metrics

    script:
    def apix = meta.apix ? "--apix ${meta.apix}" : ''
    """
    pixer-evaluate --picks ${picks} --truth ${truth} --diameter ${meta.diameter} ${apix} --out evaluation ${params.evaluate_args}
    """

    stub:
    """
    mkdir -p evaluation && echo '{}' > evaluation/metrics.json
    """
}
