/*
 * PIXER_TRAIN: the segmentation network, its trunk started from the classifier. Data-parallel
 * over params.gpus processes on one node (torchrun; pixer train reads the rank from torchrun's
 * environment; one process trains on CPU or one GPU).
 */
process PIXER_TRAIN {
    tag "${meta.id}"
    label 'process_gpu'
    container "${params.container}"
    publishDir "${params.outdir}/${meta.id}", mode: params.publish_dir_mode

    input:
    tuple val(meta), path(micrographs), path(labels), path(classifier)

    output:
    tuple val(meta), path("model"), emit: model

    script:
    def apix = meta.apix ? "--apix ${meta.apix}" : ''
    """
    torchrun --standalone --nnodes=1 --nproc_per_node=${params.gpus} "\$(command -v pixer-train)" \\
        --micrographs ${micrographs} --labels ${labels} --init-trunk ${classifier} ${apix} --out model \\
        --steps ${params.train_steps} --batch-size ${params.train_batch} --tile ${params.train_tile} \\
        --width ${params.width} --device ${params.device} --seed ${params.seed} --no-progress ${params.train_args}
    """

    stub:
    """
    mkdir -p model && touch model/model.pt model/config.json
    """
}
