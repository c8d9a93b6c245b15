/*
 * DEMO: simulate a training and a test set, train, pick, evaluate.
 * Groovy only wires channels; every step is a bin/ entry point.
 */

process SIMULATE {
    tag "${name}"
    label 'process_low'

    input:
    tuple val(name), val(seed), val(n)

    output:
    tuple val(name), path("${name}"), emit: data

    script:
    """
    pixer-simulate --out ${name} --n ${n} --size ${params.size} --apix ${params.apix} \\
        --snr-db ${params.snr_db} --seed ${seed} --no-progress
    """

    stub:
    """
    mkdir -p ${name}/micrographs && touch ${name}/particles.star ${name}/micrographs.star
    """
}

process TRAIN {
    tag "${data.name}"
    label 'process_medium'

    input:
    path data

    output:
    path "model", emit: model

    script:
    """
    pixer-train --micrographs ${data}/micrographs.star --coords ${data}/particles.star \\
        --diameter ${params.diameter} --steps ${params.steps} --seed ${params.seed} --out model --no-progress
    """

    stub:
    """
    mkdir -p model && touch model/model.pt model/config.json
    """
}

process PICK {
    tag "${data.name}"
    label 'process_medium'
    publishDir "${params.outdir}", mode: 'copy'

    input:
    path data
    path model

    output:
    path "picks", emit: picks

    script:
    """
    pixer-pick --micrographs ${data}/micrographs --model ${model} --diameter ${params.diameter} \\
        --out picks --no-progress
    """

    stub:
    """
    mkdir -p picks && touch picks/picks.csv
    """
}

process EVALUATE {
    tag "${data.name}"
    label 'process_single'
    publishDir "${params.outdir}", mode: 'copy'

    input:
    path data
    path picks

    output:
    path "evaluation", emit: evaluation

    script:
    """
    pixer-evaluate --picks ${picks} --truth ${data}/particles.star --diameter ${params.diameter} --out evaluation
    """

    stub:
    """
    mkdir -p evaluation && touch evaluation/metrics.json
    """
}

workflow DEMO {
    main:
    sets = Channel.of(['train', params.seed + 1, params.n_train], ['test', params.seed + 2, params.n_test])
    SIMULATE(sets)
    train = SIMULATE.out.data.filter { it[0] == 'train' }.map { it[1] }
    test = SIMULATE.out.data.filter { it[0] == 'test' }.map { it[1] }
    TRAIN(train)
    PICK(test, TRAIN.out.model)
    EVALUATE(test, PICK.out.picks)

    emit:
    evaluation = EVALUATE.out.evaluation
}
