/*
 * PIXER: the whole pipeline. Datasets come from --input (a samplesheet) or, without one, from
 * SIMULATE; then LABELS -> TRAIN (classifier, then segmentation) -> PICK -> EVALUATE/REPORT, or
 * straight to PICK with a trained --model. Every channel is keyed by the dataset's meta map
 * and stages meet by join.
 */
include { SAMPLESHEET } from './samplesheet'
include { SIMULATE } from './simulate'
include { LABELS } from './labels'
include { TRAIN } from './train'
include { PICK } from './pick'
include { EVALUATE } from './evaluate'

workflow PIXER {
    main:
    if (params.input) {
        SAMPLESHEET(params.input)
        training = SAMPLESHEET.out.training
        picking = SAMPLESHEET.out.picking
        truth = SAMPLESHEET.out.truth
    } else {
        SIMULATE()
        training = SIMULATE.out.training
        picking = SIMULATE.out.picking
        truth = SIMULATE.out.truth
    }

    if (params.model) {
        models = picking.map { meta, mics -> [meta, file(params.model, checkIfExists: true)] }
    } else {
        LABELS(training)
        TRAIN(training, LABELS.out.labels)
        models = TRAIN.out.model
    }

    PICK(picking, models)
    EVALUATE(PICK.out.picks, picking, truth)

    emit:
    model = models                           // [meta, model folder]
    picks = PICK.out.picks                   // [meta, picks folder]
    evaluation = EVALUATE.out.evaluation     // [meta, evaluation folder]
    metrics = EVALUATE.out.metrics           // [meta, metrics.json]
    report = EVALUATE.out.report             // [meta, report.html]
}
