/*
 * PIXER_TRAIN_CLASSIFIER: the crop classifier (particle / interference / noise) whose trunk
 * initialises the segmentation network. Interference masks are optional ([] when absent).
 */
process PIXER_TRAIN_CLASSIFIER {
    tag "${meta.id}"
    label 'process_gpu'
    container "${params.container}"
    publishDir "${params.outdir}/${meta.id}", mode: params.publish_dir_mode

    input:
    tuple val(meta), path(micrographs), path(particles), path(junk_masks)

    output:
    tuple val(meta), path("classifier"), emit: classifier

    script:
    def junk = junk_masks ? "--junk-masks ${junk_masks}" : ''
    def apix = meta.apix ? "--apix ${meta.apix}" : ''
    """
    pixer-train-classifier --micrographs ${micrographs} --coords ${particles} --diameter ${meta.diameter} ${junk} \\
        ${apix} --out classifier --steps ${params.classifier_steps} --width ${params.width} \\
        --device ${params.device} --seed ${params.seed} --no-progress ${params.classifier_args}
    """

    stub:
    """
    mkdir -p classifier && touch classifier/classifier.pt classifier/classifier.json
    """
}
