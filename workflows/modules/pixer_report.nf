/*
 * PIXER_REPORT: one self-contained HTML page per dataset: picks drawn on sample micrographs,
 * score histogram, picks per micrograph and, with true coordinates ([] when absent), accuracy.
 */
process PIXER_REPORT {
    tag "${meta.id}"
    label 'process_single'
    container "${params.container}"
    publishDir "${params.outdir}/${meta.id}", mode: params.publish_dir_mode

    input:
    tuple val(meta), path(picks), path(micrographs), path(truth)

    output:
    tuple val(meta), path("report/report.html"), emit: report

    script:
    def with_truth = truth ? "--truth ${truth}" : ''
    def apix = meta.apix ? "--apix ${meta.apix}" : ''
    """
    mkdir -p report
    pixer-report --picks ${picks} --micrographs ${micrographs} ${with_truth} --diameter ${meta.diameter} ${apix} \\
        --out report/report.html ${params.report_args}
    """

    stub:
    """
    mkdir -p report && touch report/report.html
    """
}
