// Parse Nextflow (.nf) and config files with the Groovy compiler up to the CONVERSION phase
// (syntax errors fail here) and print, one per line, what the static checks need:
//   PROCESS <name>, WORKFLOW <name>, INCLUDE <name> <alias> <path>, CALL <name>
// Usage: groovy nf_ast.groovy FILE...   (exit 1 with the compiler's message on a syntax error)
import org.codehaus.groovy.ast.CodeVisitorSupport
import org.codehaus.groovy.ast.expr.*
import org.codehaus.groovy.control.CompilationUnit
import org.codehaus.groovy.control.CompilationFailedException
import org.codehaus.groovy.control.Phases

class Walker extends CodeVisitorSupport {
    List<String> out = []
    Set<MethodCallExpression> definitions = [] as Set

    private static String firstName(Expression args) {
        def list = (args instanceof ArgumentListExpression) ? args.expressions : [args]
        if (!list) return null
        def e = list[0]
        if (e instanceof MethodCallExpression) return e.methodAsString
        if (e instanceof VariableExpression) return e.name
        if (e instanceof ConstantExpression) return e.value?.toString()
        return null
    }

    private void includes(Expression closureArgs, String path) {
        def list = (closureArgs instanceof ArgumentListExpression) ? closureArgs.expressions : [closureArgs]
        list.each { c ->
            if (c instanceof ClosureExpression) {
                c.code.visit(new CodeVisitorSupport() {
                    void visitVariableExpression(VariableExpression v) { out << "INCLUDE ${v.name} ${v.name} ${path}" }
                    void visitCastExpression(CastExpression cast) {
                        def src = cast.expression instanceof VariableExpression ? cast.expression.name : cast.expression.text
                        out << "INCLUDE ${src} ${cast.type.name} ${path}"
                    }
                })
            }
        }
    }

    void visitMethodCallExpression(MethodCallExpression call) {
        def name = call.methodAsString
        if (name == 'from' && call.objectExpression instanceof MethodCallExpression
                && call.objectExpression.methodAsString == 'include') {
            def path = firstName(call.arguments)
            includes(call.objectExpression.arguments, path)
        } else if (name == 'process' || name == 'workflow') {
            def target = firstName(call.arguments)
            if (target != null) out << "${name.toUpperCase()} ${target}"
            def list = (call.arguments instanceof ArgumentListExpression) ? call.arguments.expressions : []
            if (list && list[0] instanceof MethodCallExpression) definitions << list[0]
        } else if (name != null && name ==~ /[A-Z][A-Z0-9_]*/ && !definitions.contains(call)) {
            out << "CALL ${name}"
        }
        super.visitMethodCallExpression(call)
    }
}

int status = 0
args.each { path ->
    def unit = new CompilationUnit()
    unit.addSource(new File(path))
    try {
        unit.compile(Phases.CONVERSION)
    } catch (CompilationFailedException e) {
        System.err.println("${path}: ${e.message.readLines().findAll { it.trim() }.take(3).join(' ')}")
        status = 1
        return
    }
    def walker = new Walker()
    unit.AST.modules.each { module ->
        module.statementBlock.visit(walker)
        module.classes.each { cls -> cls.methods.each { m -> m.code?.visit(walker) } }
    }
    println("FILE ${path}")
    walker.out.unique().each { println(it) }
}
System.exit(status)
