/*
 * PIXER_LABELS: segmentation labels per micrograph. With a map: PIXER's reconstruction-driven
 * labels (re-projected particles); without one ([]): discs of the diameter at the coordinates.
 */
process PIXER_LABELS {
    tag "${meta.id}"
    label 'process_low'
    container "${params.container}"
    publishDir "${params.outdir}/${meta.id}", mode: params.publish_dir_mode

    input:
    tuple val(meta), path(micrographs), path(particles), path(map)

    output:
    tuple val(meta), path("labels"), emit: labels

    script:
    def source = map ? "--particles ${particles} --map ${map}" : "--coords ${particles} --diameter ${meta.diameter}"
    def apix = meta.apix ? "--apix ${meta.apix}" : ''
    """
    pixer-labels ${source} --micrographs ${micrographs} ${apix} --out labels --no-progress ${params.labels_args}
    """

    stub:
    """
    mkdir -p labels && touch labels/label_index.star labels/labels.json
    """
}
